package coordinator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestAnOversizedReadIsRefused sends, as an operator, a GetRollup request
// far larger than any valid one: the coordinator refuses it
// RESOURCE_EXHAUSTED, naming its limit, and an analyst's
// StartRollup is refused at its headers, as before, PERMISSION_DENIED.
func TestAnOversizedReadIsRefused(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	addr := serve(t, c)
	operator := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, "alice")))
	_, err := operator.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: strings.Repeat("r", 256<<10)})
	// grpc refuses it on its length prefix: no coordinator method takes
	// more than 64 KiB, so the server-wide limit is that.
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "vs. 65536") {
		t.Errorf("GetRollup of a 256 KiB id: got %v, want ResourceExhausted naming the limit of 65536 bytes", err)
	}
	analyst := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	_, err = analyst.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: strings.Repeat("9", 1<<20)}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "spiffe://isa/analyst/bob may not call") {
		t.Errorf("analyst StartRollup of 1 MiB: got %v, want PermissionDenied naming the analyst", err)
	}
}
