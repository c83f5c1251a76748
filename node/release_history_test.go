package node

import (
	"fmt"
	"os"
	"testing"
	"time"

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

// exactShare returns how many of the release's cells (every period cell of
// every metric of 2020) are published exactly, and how many there are.
func exactShare(t *testing.T, s *Store) (exact, cells int) {
	t.Helper()
	win := s.cal.blockWindow(2020)
	withheld := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRelease).ForEach(func(k, v []byte) error {
			if c, ok := parseRelCell(v); ok && !c.exact() {
				withheld++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []fedreportv1.Metric{arrests, victims} {
		p := newBlockProblem(s.cal, s.policy.masks(), uint8(m), win, uint64(s.policy.MinCellCount), 0)
		for _, c := range p.cells {
			if c.period {
				cells++
			}
		}
	}
	return cells - withheld, cells
}

// historyBytes is the size of the release history's entries.
func historyBytes(t *testing.T, s *Store) (entries, bytes int) {
	t.Helper()
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReleaseHistory)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			entries++
			bytes += len(k) + len(v)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return entries, bytes
}

// A node whose data arrive in small batches keeps at least as many cells
// exact with its history as without (as the release before histories were
// kept): 400 records loaded, then 10 batches of 10, against the same 500
// records loaded at once. FEDREPORT_HISTORY_TABLE=1 prints the shares, the
// release times and the history's size batch by batch, and adds the same
// records arriving from an empty node, 50 batches of 10.
func TestSmallBatchesKeepCellsExact(t *testing.T) {
	t.Parallel()
	table := os.Getenv("FEDREPORT_HISTORY_TABLE") != ""
	recs := randomRecords(11, 500, "r")
	run := func(name string, first, batch, limit int) (exact, cells int) {
		s := openTestStore(t, operationPolicy())
		s.historyLimit = limit
		if first > 0 {
			ingest(t, s, recs[:first])
		}
		for i := first; i < len(recs); i += batch {
			start := time.Now()
			ingest(t, s, recs[i:min(i+batch, len(recs))])
			if table {
				exact, cells := exactShare(t, s)
				entries, bytes := historyBytes(t, s)
				t.Logf("%s: batch %2d: ingest and release %7.1f ms, exact %d/%d, history %d entries %d bytes",
					name, (i-first)/batch+1, float64(time.Since(start).Microseconds())/1000, exact, cells, entries, bytes)
			}
		}
		return exactShare(t, s)
	}
	onceExact, cells := run("at once", 0, len(recs), maxHistory)
	without, _ := run("without a history", 400, 10, 0)
	with, _ := run("with its history", 400, 10, maxHistory)
	t.Logf("500 records: %d/%d cells exact loaded at once; 400 then 10 batches of 10: %d without a history, %d with it", onceExact, cells, without, with)
	if with < without {
		t.Errorf("got %d cells exact with the history, want at least the %d without", with, without)
	}
	if table {
		without, _ := run("from empty, without a history", 0, 10, 0)
		with, _ := run("from empty, with its history", 0, 10, maxHistory)
		t.Logf("500 records in 50 batches of 10 from an empty node: %d/%d cells exact without a history, %d with it", without, cells, with)
	}
}

// A published value moves only by a change of k or more records since it
// was published, not since the last release: 3 arrests added in March
// (the total held pending), then moved to October in the same write as 2
// more arrive in March, change the operation's total by 5 records from
// the release before but by 2 from the one that published it.
func TestAPendingTotalMovesOnlyByKSinceItWasPublished(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	ingest(t, s, randomRecords(5, 400, "r"))
	before := agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0].GetCount()
	total := func(when string) {
		t.Helper()
		if c := agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0]; !c.GetPending() || c.GetCount() != before {
			t.Errorf("%s: got %d (pending %v), want %d held pending", when, c.GetCount(), c.GetPending(), before)
		}
	}
	ingest(t, s, []*fedreportv1.Record{rec("a-1", arrests, "2020-03-05", 1), rec("a-2", arrests, "2020-03-05", 1), rec("a-3", arrests, "2020-03-05", 1)})
	total("after 3 arrests in March")
	ingest(t, s, []*fedreportv1.Record{rec("a-1", arrests, "2020-10-05", 1), rec("a-2", arrests, "2020-10-05", 1), rec("a-3", arrests, "2020-10-05", 1),
		rec("b-1", arrests, "2020-03-06", 1), rec("b-2", arrests, "2020-03-06", 1)})
	total("after moving them to October and 2 more in March")
}
