package node

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// statusBytes is the size of what a refusal sends back: its message and
// every detail, encoded as on the wire.
func statusBytes(err error) int { return proto.Size(status.Convert(err).Proto()) }

// TestAMegabyteFieldComesBackShort sends a 1 MiB value in each field a node
// quotes back in an error, over mTLS as the callers allowed to send them:
// every refusal, message and details together, stays under 1 KiB and still
// names the field and the value's length.
func TestAMegabyteFieldComesBackShort(t *testing.T) {
	t.Parallel()
	// Limits that let a megabyte through to the handlers, as a node
	// configured for larger requests would: the echo, not the limit, is
	// under test.
	tn := startNodeWith(t, Config{Limits: grpcsrv.Limits{RecvLimits: map[string]int{}, RecvLimit: 2 << 20}})
	big := strings.Repeat("\x01", 1<<20) // a control character: escaped, it would take 4 bytes each
	admin := tn.dial(t, identity.MemberAdmin(td, "FR", "ops"))
	coord := tn.dial(t, identity.Coordinator(td, "main"))
	for _, tc := range []struct {
		name, field string
		call        func(context.Context) error
	}{
		{"a retraction of a 1 MiB record_id", "record_id", func(ctx context.Context) error {
			_, err := fedreportv1.NewNodeAdminServiceClient(admin).RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{big}})
			return err
		}},
		{"an ingest of a 1 MiB record_id", "record_id", func(ctx context.Context) error {
			_, err := sendStream(ctx, admin, "fr.csv", []*fedreportv1.Record{rec(big, arrests, "2020-01-01", 1)})
			return err
		}},
		{"an ingest from a 1 MiB source name", "record_id", func(ctx context.Context) error {
			_, err := sendStream(ctx, admin, big, []*fedreportv1.Record{rec("FR 1", arrests, "2020-01-01", 1)})
			return err
		}},
		{"an aggregate with a 1 MiB rollup_id", "rollup_id", func(ctx context.Context) error {
			_, err := fedreportv1.NewAggregationServiceClient(coord).Aggregate(ctx, &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", RollupId: big, RollupStartedAt: rollupStarted})
			return err
		}},
		{"an aggregate from a 1 MiB date", "from", func(ctx context.Context) error {
			_, err := fedreportv1.NewAggregationServiceClient(coord).Aggregate(ctx, &fedreportv1.AggregateRequest{From: big, To: "2020-01-31"})
			return err
		}},
	} {
		err := tc.call(callCtx(t))
		if err == nil {
			t.Errorf("%s: succeeded, want a refusal", tc.name)
			continue
		}
		if n := statusBytes(err); n >= 1024 {
			t.Errorf("%s: the refusal is %d bytes, want under 1024", tc.name, n)
		}
		msg := status.Convert(err).Message()
		for _, want := range []string{tc.field, "bytes)"} {
			if tc.name == "an ingest from a 1 MiB source name" && want == "bytes)" {
				want = `"\x01\x01` // the source, escaped and cut
			}
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %.300q does not contain %q", tc.name, msg, want)
			}
		}
	}
}
