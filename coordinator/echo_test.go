package coordinator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestAMegabyteFieldComesBackShort sends a 1 MiB rollup id to GetRollup and
// a 1 MiB date to StartRollup over mTLS: each refusal, message and details
// together, stays under 1 KiB and still names the value's start and length.
func TestAMegabyteFieldComesBackShort(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)})
	// Limits that let a megabyte through to the handlers, as a coordinator
	// configured for larger requests would: the echo, not the limit, is
	// under test.
	cfg.Limits.RecvLimit = 2 << 20
	c := newCoordinator(t, ca, cfg)
	client := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, serve(t, c), identity.Operator(td, "alice")))
	big := strings.Repeat("\x01", 1<<20)

	_, err := client.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: big})
	check := func(what string, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: succeeded, want a refusal", what)
		}
		st := status.Convert(err)
		if n := proto.Size(st.Proto()); n >= 1024 {
			t.Errorf("%s: the refusal is %d bytes, want under 1024", what, n)
		}
		for _, w := range want {
			if !strings.Contains(st.Message(), w) {
				t.Errorf("%s: message %.300q does not contain %q", what, st.Message(), w)
			}
		}
	}
	check("GetRollup of a 1 MiB id", err, `rollup "\x01\x01`, "(1048576 bytes)", "not found")

	_, err = client.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: big, To: "2020-01-31"}})
	check("StartRollup from a 1 MiB date", err, `spec.from: "\x01\x01`, "(1048576 bytes)")
}
