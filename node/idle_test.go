package node

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestASilentIngestIsRolledBackAndTheNextProceeds opens an ingest stream,
// sends a batch and then nothing, on one listener, and a second ingest on
// the other. The second is told at once who holds the write lock and since
// when; the node ends the silent stream after its idle timeout, rolls it
// back and releases the lock, and the second ingest commits.
func TestASilentIngestIsRolledBackAndTheNextProceeds(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	admin := identity.MemberAdmin(td, "FR", "ops")
	for _, tc := range []struct {
		name               string
		silentTLS, nextTLS bool
		holder             string
	}{
		{"silent over mTLS, next on the admin socket", true, false, admin.String()},
		{"silent on the admin socket, next over mTLS", false, true, LocalAdmin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := startNodeWith(t, Config{Limits: grpcsrv.Limits{IngestIdleTimeout: idle}})
			conn := func(tls bool) *grpc.ClientConn {
				if tls {
					return tn.dial(t, admin)
				}
				return tn.dialSocket(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()

			silent, err := fedreportv1.NewNodeAdminServiceClient(conn(tc.silentTLS)).IngestRecords(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := silent.Send(&fedreportv1.IngestRecordsRequest{Source: "silent.csv", Records: []*fedreportv1.Record{rec("S-1", arrests, "2020-01-01", 1)}}); err != nil {
				t.Fatal(err)
			}
			md, err := silent.Header()
			if err != nil || len(md.Get(HeaderWriteLockAcquired)) != 1 {
				t.Fatalf("silent stream's header: got %v, %v; want %s", md, err, HeaderWriteLockAcquired)
			}
			start := time.Now()

			next, err := fedreportv1.NewNodeAdminServiceClient(conn(tc.nextTLS)).IngestRecords(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := next.Send(&fedreportv1.IngestRecordsRequest{Source: "next.csv", Records: []*fedreportv1.Record{rec("N-1", arrests, "2020-01-02", 1)}}); err != nil {
				t.Fatal(err)
			}
			md, err = next.Header()
			if err != nil {
				t.Fatal(err)
			}
			if got := md.Get(HeaderWriteLockHeldBy); len(got) != 1 || got[0] != tc.holder {
				t.Errorf("next stream's header %s: got %v, want %s", HeaderWriteLockHeldBy, got, tc.holder)
			}
			if got := md.Get(HeaderWriteLockHeldSince); len(got) != 1 {
				t.Errorf("next stream's header %s: got %v, want the time", HeaderWriteLockHeldSince, got)
			} else if since, err := time.Parse(time.RFC3339, got[0]); err != nil || since.After(start) || start.Sub(since) > time.Minute {
				t.Errorf("next stream's header %s: got %s, want a time just before %s", HeaderWriteLockHeldSince, got[0], start.UTC().Format(time.RFC3339))
			}
			resp, err := next.CloseAndRecv()
			if err != nil {
				t.Fatalf("next ingest: %v", err)
			}
			if resp.GetAdded() != 1 {
				t.Errorf("next ingest added %d records, want 1", resp.GetAdded())
			}
			// Not before the silent stream had been silent for about the
			// timeout (its clock started a little before start).
			if waited := time.Since(start); waited < idle/2 {
				t.Errorf("next ingest committed after %s, long before the idle timeout of %s", waited, idle)
			}

			// The silent stream was ended by the node, saying why in its trailer.
			err = silent.RecvMsg(&fedreportv1.IngestRecordsResponse{})
			if status.Code(err) != codes.Canceled {
				t.Errorf("silent stream: got %v, want Canceled", err)
			}
			if got := silent.Trailer().Get(grpcsrv.IdleTrailer); len(got) != 1 || got[0] != idle.String() {
				t.Errorf("silent stream's trailer %s: got %v, want %s", grpcsrv.IdleTrailer, got, idle)
			}
			st, err := tn.n.Store().Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Records != 1 {
				t.Errorf("%d records stored, want 1 (the silent stream's rolled back)", st.Records)
			}
		})
	}
}
