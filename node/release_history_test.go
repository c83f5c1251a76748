package node

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// groomingBatches ingests the operation's 400 random records, then calls
// between (when not nil) and ingests batches of October grooming arrests
// and March ones: 2 each, then 20 and 20 more. It returns the October
// grooming cell, the operation's total and the total before the batches.
func groomingBatches(t *testing.T, s *Store, between func()) (grooming, total *fedreportv1.Cell, before uint64) {
	t.Helper()
	ingest(t, s, randomRecords(5, 400, "r"))
	before = agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0].GetCount()
	if between != nil {
		between()
	}
	for _, b := range []struct {
		prefix, date string
		n            int
	}{{"oct-a", "2020-10-05", 2}, {"mar-a", "2020-03-05", 2}, {"oct-b", "2020-10-12", 20}, {"mar-b", "2020-03-12", 20}, {"oct-c", "2020-10-19", 20}, {"mar-c", "2020-03-19", 20}} {
		var recs []*fedreportv1.Record
		for i := range b.n {
			r := rec(fmt.Sprintf("%s-%d", b.prefix, i), arrests, b.date, 1)
			r.Offence, r.Channel = fedreportv1.Offence_OFFENCE_GROOMING, fedreportv1.Channel_CHANNEL_APP
			recs = append(recs, r)
		}
		ingest(t, s, recs)
	}
	for _, c := range agg(t, s, "2020-10-01", "2020-10-31", fedreportv1.Dimension_DIMENSION_OFFENCE).GetCells() {
		if c.GetOffence() == "grooming" {
			grooming = c
		}
	}
	if grooming == nil {
		t.Fatal("no grooming cell for October")
	}
	return grooming, agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0], before
}

// A block whose releases cannot be judged against their whole history
// (one that grew past the history's limit, or a file written before the
// history was kept) keeps what it withheld withheld and what it held
// pending pending: republishing without that judgement is what let the
// attacker pin earlier cells.
func TestWithoutAHistoryWithheldCellsStayWithheld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		between func(s *Store) func()
	}{
		{"history past its limit", func(s *Store) func() { return func() { s.historyLimit = 1 } }},
		{"file without a history", func(s *Store) func() {
			return func() {
				if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketReleaseHistory) }); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openTestStore(t, operationPolicy())
			grooming, total, before := groomingBatches(t, s, tc.between(s))
			if grooming.GetSuppressedCells() == 0 {
				t.Errorf("October grooming: got %d published, want it withheld as the release before it withheld it", grooming.GetCount())
			}
			if !total.GetPending() || total.GetCount() != before {
				t.Errorf("the operation's total: got %d (pending %v), want %d held pending", total.GetCount(), total.GetPending(), before)
			}
		})
	}
}
