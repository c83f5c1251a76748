package node

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// FuzzAggregateRequest feeds the node's validation of aggregate requests
// (prepare, what every Aggregate call goes through before any data is read)
// with arbitrary dates, enum values and rollup ids. It must never panic; it
// must accept only well-formed requests within the policy, and refuse the
// rest with a field error or a policy error that maps to InvalidArgument or
// FailedPrecondition, never Internal.
func FuzzAggregateRequest(f *testing.F) {
	s, err := OpenStore(filepath.Join(f.TempDir(), "fr.db"), StoreOptions{Member: "FR", Policy: Policy{
		EarliestDate: "2005-01-01",
		Tables: [][]fedreportv1.Dimension{
			{fedreportv1.Dimension_DIMENSION_OFFENCE}, {fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_VICTIM_AGE},
		},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	f.Add("2020-01-01", "2020-09-30", []byte{}, []byte{}, "")
	f.Add("2020-01-01", "2020-09-30", []byte{1, 2, 3}, []byte{2, 3}, "R-00000042")
	f.Add("2020-09-30", "2020-01-01", []byte{1, 1}, []byte{1}, "x")
	f.Add("2004-12-31", "2020-02-30", []byte{0, 6, 255}, []byte{4, 5, 9}, "a b")
	f.Add("2020-1-1", "99999-01-01", []byte{1, 2, 3, 4, 5, 1}, []byte{2, 2}, "\x00")
	f.Fuzz(func(t *testing.T, from, to string, metrics, groupBy []byte, rollupID string) {
		req := &fedreportv1.AggregateRequest{From: from, To: to, RollupId: rollupID, RollupStartedAt: rollupStarted}
		for _, b := range metrics {
			req.Metrics = append(req.Metrics, fedreportv1.Metric(int8(b)))
		}
		for _, b := range groupBy {
			req.GroupBy = append(req.GroupBy, fedreportv1.Dimension(int8(b)))
		}
		q, err := s.prepare(req)
		if err != nil {
			var fe *records.FieldError
			var pe *PolicyError
			if !errors.As(err, &fe) && !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want a FieldError or a PolicyError", err, err)
			}
			st, internal := toStatus(err)
			if internal || (status.Code(st) != codes.InvalidArgument && status.Code(st) != codes.FailedPrecondition) {
				t.Fatalf("refusal maps to %v, want InvalidArgument or FailedPrecondition", st)
			}
			return
		}
		if q.from > q.to {
			t.Fatalf("accepted from %s after to %s", from, to)
		}
		if len(q.metrics) == 0 || len(q.metrics) > 5 || len(q.groupBy) > 4 {
			t.Fatalf("accepted %d metrics and %d dimensions", len(q.metrics), len(q.groupBy))
		}
		for i, m := range q.metrics {
			if !records.ValidMetric(m) || slices.Contains(q.metrics[:i], m) {
				t.Fatalf("accepted metrics %v", q.metrics)
			}
		}
		for i, d := range q.groupBy {
			if slices.Contains(q.groupBy[:i], d) {
				t.Fatalf("accepted group_by %v", q.groupBy)
			}
		}
		if !s.policy.publishes(q.mask) {
			t.Fatalf("accepted group_by %v, not a published table", q.groupBy)
		}
		for _, part := range q.parts {
			if len(part) == 0 {
				t.Fatalf("accepted %s..%s with a part no release period tiles", from, to)
			}
		}
		if len(rollupID) > MaxRollupIDLen {
			t.Fatalf("accepted a rollup id of %d bytes", len(rollupID))
		}
	})
}
