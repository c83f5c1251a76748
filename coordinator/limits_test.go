package coordinator

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
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

// TestReadsAreRateLimitedPerIdentity calls each read of the coordinator,
// as one analyst, until it is refused: with the default limits, each serves
// at least its burst, then refuses RESOURCE_EXHAUSTED, reason RATE_LIMITED,
// with a RetryInfo, while another identity's calls still go through.
func TestReadsAreRateLimitedPerIdentity(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	addr := serve(t, c)
	bob := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	alice := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, "alice")))
	for _, tc := range []struct {
		method string
		call   func(fedreportv1.CoordinatorServiceClient) error
	}{
		{fedreportv1.CoordinatorService_GetRollup_FullMethodName, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: "r00000001"})
			return err
		}},
		{fedreportv1.CoordinatorService_ListRollups_FullMethodName, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
			return err
		}},
		{fedreportv1.CoordinatorService_ListMembers_FullMethodName, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListMembers(t.Context(), &fedreportv1.ListMembersRequest{})
			return err
		}},
	} {
		burst := grpcsrv.DefaultRates[tc.method].Burst
		if burst == 0 {
			t.Fatalf("%s has no default rate", tc.method)
		}
		// The bucket refills while the calls run: past the burst, the
		// refusal must come, but not necessarily at once.
		var refused error
		calls := 0
		for calls < 2*burst && refused == nil {
			calls++
			if err := tc.call(bob); status.Code(err) == codes.ResourceExhausted {
				refused = err
			}
		}
		switch {
		case refused == nil:
			t.Errorf("%s: %d calls of one analyst, none refused; want a refusal after %d", tc.method, calls, burst)
			continue
		case calls <= burst:
			t.Errorf("%s: refused at call %d, within the burst of %d: %v", tc.method, calls, burst, refused)
		}
		var reason string
		var delay time.Duration
		for _, d := range status.Convert(refused).Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				reason = d.GetReason()
			case *errdetails.RetryInfo:
				delay = d.GetRetryDelay().AsDuration()
			}
		}
		if reason != grpcsrv.ReasonRateLimited || delay <= 0 {
			t.Errorf("%s refused with reason %q and retry delay %v; want %s and a delay above 0", tc.method, reason, delay, grpcsrv.ReasonRateLimited)
		}
		if err := tc.call(alice); status.Code(err) == codes.ResourceExhausted {
			t.Errorf("%s of another identity: got %v, want it served", tc.method, err)
		}
	}
}
