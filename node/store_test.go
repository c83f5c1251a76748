package node

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// mustVerify checks the invariant of every committed state: counters equal
// a recount of the records, and the disclosure chain is intact.
func mustVerify(t *testing.T, s *Store) *Report {
	t.Helper()
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.OpenStream {
		t.Fatal("an ingest stream is still open")
	}
	if rep.PurgePending {
		t.Fatal("the undo entries of a committed stream are still there")
	}
	return rep
}

// totals answers an ungrouped request for every metric over all time with
// k = 1 semantics (the test policy) and returns count per metric.
func totals(t *testing.T, s *Store) map[fedreportv1.Metric]uint64 {
	t.Helper()
	// The counters, not an answer: answers are the release's, with small
	// cells withheld; the ingest tests check what is stored.
	out := map[fedreportv1.Metric]uint64{}
	for _, m := range records.Metrics() {
		out[m] = 0
	}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			out[counterKey(k).metric()] += getUint64(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var noSuppression = Policy{MinCellCount: 3}

func genRecords(t testing.TB, member string, n int, seed int64) []*fedreportv1.Record {
	t.Helper()
	var out []*fedreportv1.Record
	err := records.Gen(member, n, seed, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 9, 30, 0, 0, 0, 0, time.UTC),
		func(r *fedreportv1.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sumByMetric(recs []*fedreportv1.Record) map[fedreportv1.Metric]uint64 {
	out := map[fedreportv1.Metric]uint64{}
	for _, r := range recs {
		out[r.GetMetric()] += uint64(records.Quantity(r))
	}
	return out
}

func equalTotals(a, b map[fedreportv1.Metric]uint64) bool {
	for _, m := range records.Metrics() {
		if a[m] != b[m] {
			return false
		}
	}
	return true
}

func TestIngestStoresRecordsAndCounters(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	recs := genRecords(t, "FR", 20000, 1) // more than two ingest batches
	sum := ingest(t, s, recs[:5000], recs[5000:])
	if want := (Summary{Received: 20000, Added: 20000, DataVersion: 1}); withoutTiming(sum) != want {
		t.Errorf("summary: got %+v, want %+v", sum, want)
	}
	rep := mustVerify(t, s)
	if rep.Records != 20000 {
		t.Errorf("records: got %d, want 20000", rep.Records)
	}
	if got, want := totals(t, s), sumByMetric(recs); !equalTotals(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	got, err := s.Record(recs[17].GetRecordId())
	if err != nil || !proto.Equal(got, recs[17]) {
		t.Errorf("Record: got %v, %v, want %v", got, err, recs[17])
	}
}

func TestIngestingTheSameFileTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	recs := genRecords(t, "FR", 3000, 2)
	ingest(t, s, recs)
	before := totals(t, s)
	sum := ingest(t, s, recs)
	if want := (Summary{Received: 3000, Unchanged: 3000, DataVersion: 1}); withoutTiming(sum) != want {
		t.Errorf("second ingest: got %+v, want %+v", sum, want)
	}
	mustVerify(t, s)
	if after := totals(t, s); !equalTotals(after, before) {
		t.Errorf("totals moved: before %v, after %v", before, after)
	}
	// An empty stream changes nothing either.
	if sum := ingest(t, s); withoutTiming(sum) != (Summary{DataVersion: 1}) {
		t.Errorf("empty stream: got %+v", sum)
	}
}

func TestCorrectionMovesCountersByTheDifference(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, []*fedreportv1.Record{
		rec("FR-1", arrests, "2020-03-04", 3),
		rec("FR-2", arrests, "2020-03-04", 4),
	})
	corrected := rec("FR-1", sites, "2020-05-01", 5)
	sum := ingest(t, s, []*fedreportv1.Record{corrected, rec("FR-2", arrests, "2020-03-04", 4)})
	if want := (Summary{Received: 2, Changed: 1, Unchanged: 1, DataVersion: 2}); withoutTiming(sum) != want {
		t.Errorf("summary: got %+v, want %+v", sum, want)
	}
	mustVerify(t, s)
	got := totals(t, s)
	if got[arrests] != 4 || got[sites] != 5 {
		t.Errorf("totals after correction: got arrests %d, sites_blocked %d, want 4, 5", got[arrests], got[sites])
	}
	if r, _ := s.Record("FR-1"); !proto.Equal(r, corrected) {
		t.Errorf("FR-1: got %v, want %v", r, corrected)
	}
}

func TestDuplicateRecordIDInOneStreamStoresNothing(t *testing.T) {
	t.Parallel()
	recs := genRecords(t, "FR", ingestBatch+100, 3)
	tests := []struct {
		name    string
		batches [][]*fedreportv1.Record
		id      string
		index   uint64
	}{
		{"twice in one batch", [][]*fedreportv1.Record{{rec("FR-1", arrests, "2020-01-01", 1), rec("FR-2", arrests, "2020-01-01", 1), rec("FR-1", sites, "2020-01-02", 1)}}, "FR-1", 3},
		{"in two transactions", [][]*fedreportv1.Record{recs, {rec(recs[5].GetRecordId(), arrests, "2020-01-01", 1)}}, recs[5].GetRecordId(), uint64(len(recs) + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openTestStore(t, noSuppression)
			base := []*fedreportv1.Record{rec("BASE-1", victims, "2020-02-02", 7)}
			ingest(t, s, base)
			_, err := tryIngest(t.Context(), s, tt.batches...)
			var de *DuplicateRecordError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DuplicateRecordError", err)
			}
			if de.ID != tt.id || de.Index != tt.index || de.Source != "test.csv" {
				t.Errorf("got %+v, want id %s index %d", de, tt.id, tt.index)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("record %d of test.csv: record_id %q was already sent", tt.index, tt.id)) {
				t.Errorf("message: got %q", err)
			}
			rep := mustVerify(t, s)
			if rep.Records != 1 || rep.DataVersion != 1 {
				t.Errorf("after the refused stream: %d records, data version %d; want 1, 1", rep.Records, rep.DataVersion)
			}
		})
	}
}

func TestInvalidRecordNamesItsPlace(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	if err := in.Add("a.csv", []*fedreportv1.Record{rec("A-1", arrests, "2020-01-01", 1)}); err != nil {
		t.Fatal(err)
	}
	err = in.Add("b.csv", []*fedreportv1.Record{rec("B-1", arrests, "2020-01-01", 1), rec("B-2", arrests, "2030-01-01", 1)})
	var re *RecordError
	if !errors.As(err, &re) || re.Index != 3 || re.SourceIndex != 2 || re.Source != "b.csv" {
		t.Fatalf("got %v (%+v), want a *RecordError for record 3 of the stream, 2 of b.csv", err, re)
	}
	want := `record 2 of b.csv: date "2030-01-01" is in the future (want a day up to today, 2024-06-30)`
	if err.Error() != want {
		t.Errorf("message: got %q, want %q", err, want)
	}
	if _, err := in.Commit(); err == nil {
		t.Errorf("Commit after an error: got nil, want the error")
	}
	if rep := mustVerify(t, s); rep.Records != 0 {
		t.Errorf("records after the refused stream: got %d, want 0", rep.Records)
	}
}

func TestAbortRestoresEveryRecord(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	base := genRecords(t, "FR", 5000, 4)
	ingest(t, s, base)
	before := totals(t, s)

	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Corrections of every base record plus new ones: several batches reach
	// the file before the abort.
	changed := genRecords(t, "FR", 25000, 5)
	if err := in.Add("big.csv", changed); err != nil {
		t.Fatal(err)
	}
	if rep, _ := s.Verify(); !rep.OpenStream || !rep.OK() {
		t.Fatalf("mid-stream verify: open %v, problems %v; want an open stream and no problem", rep.OpenStream, rep.Problems)
	}
	in.Abort()
	in.Abort() // a second abort is a no-op

	rep := mustVerify(t, s)
	if rep.Records != 5000 || rep.DataVersion != 1 {
		t.Errorf("after abort: %d records, data version %d; want 5000, 1", rep.Records, rep.DataVersion)
	}
	for _, r := range base[:50] {
		if got, _ := s.Record(r.GetRecordId()); !proto.Equal(got, r) {
			t.Fatalf("%s: got %v, want %v", r.GetRecordId(), got, r)
		}
	}
	if after := totals(t, s); !equalTotals(after, before) {
		t.Errorf("totals moved: before %v, after %v", before, after)
	}
	// The writer is free again.
	ingest(t, s, []*fedreportv1.Record{rec("FR-X", arrests, "2020-01-01", 1)})
}

func TestCrashMidStreamRollsBackOnOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fr.db")
	var logBuf safeBuffer
	opts := StoreOptions{Member: "FR", Policy: noSuppression, Now: func() time.Time { return testNow },
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}
	s, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	base := genRecords(t, "FR", 4000, 6)
	ingest(t, s, base)
	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Add("big.csv", genRecords(t, "FR", 3*ingestBatch, 7)); err != nil {
		t.Fatal(err)
	}
	// The process dies: the file is closed with the stream open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Offline verify counts what the restart will leave.
	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OpenStream || !rep.OK() || rep.Records != 3*ingestBatch {
		t.Fatalf("verify of the crashed file: open %v, records %d, problems %v; want open, %d records, none",
			rep.OpenStream, rep.Records, rep.Problems, 3*ingestBatch)
	}

	s, err = OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep = mustVerify(t, s)
	if rep.Records != 4000 || rep.DataVersion != 1 {
		t.Errorf("after reopen: %d records, data version %d; want 4000, 1", rep.Records, rep.DataVersion)
	}
	if got, want := totals(t, s), sumByMetric(base); !equalTotals(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	if !strings.Contains(logBuf.String(), "rolled back an ingest stream") {
		t.Errorf("log: got %q, want a rollback message", logBuf.String())
	}
}

func TestRetract(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, []*fedreportv1.Record{
		rec("FR-1", arrests, "2020-03-04", 3),
		rec("FR-2", arrests, "2020-03-04", 4),
		rec("FR-3", sites, "2020-03-05", 1),
	})

	_, err := s.Retract(t.Context(), []string{"FR-1", "NOPE-1", "FR-3", "NOPE-2", "NOPE-1"})
	var ue *UnknownRecordsError
	if !errors.As(err, &ue) || !slices.Equal(ue.IDs, []string{"NOPE-1", "NOPE-2"}) {
		t.Fatalf("retract with unknown ids: got %v, want an *UnknownRecordsError for NOPE-1, NOPE-2", err)
	}
	if want := "nothing retracted: 2 of the 4 record_ids are not stored (never ingested, or retracted already): NOPE-1, NOPE-2; send the retraction again without them"; err.Error() != want {
		t.Errorf("message: got %q, want %q", err, want)
	}
	rep := mustVerify(t, s)
	if rep.Records != 3 || rep.DataVersion != 1 {
		t.Fatalf("after the refused retraction: %d records, version %d; want 3, 1", rep.Records, rep.DataVersion)
	}

	sum, err := s.Retract(t.Context(), []string{"FR-1", "FR-3", "FR-1"})
	if err != nil {
		t.Fatal(err)
	}
	if sum != (RetractSummary{Retracted: 2, DataVersion: 2}) {
		t.Errorf("summary: got %+v", sum)
	}
	mustVerify(t, s)
	if got := totals(t, s); got[arrests] != 4 || got[sites] != 0 {
		t.Errorf("totals: got %v, want arrests 4, sites_blocked 0", got)
	}
	// The same retraction again, as after a lost answer: refused, and the
	// message says why that can be.
	_, err = s.Retract(t.Context(), []string{"FR-1", "FR-3", "FR-1"})
	if want := "nothing retracted: no record_id of the 2 is stored (never ingested, or retracted already, as when a retraction is sent again): FR-1, FR-3"; err == nil || err.Error() != want {
		t.Errorf("the retraction again: got %v, want %q", err, want)
	}
	if rep := mustVerify(t, s); rep.Records != 1 || rep.DataVersion != 2 {
		t.Errorf("after the retraction again: %d records, version %d; want 1, 2", rep.Records, rep.DataVersion)
	}
	if _, err := s.Retract(t.Context(), nil); err == nil {
		t.Errorf("retract of nothing: got nil, want an error")
	}
}

func TestSuppressionAtTheBoundaries(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{MinCellCount: 5})
	var recs []*fedreportv1.Record
	add := func(n int, date string, m fedreportv1.Metric, q uint32) {
		for range n {
			recs = append(recs, rec(fmt.Sprintf("R-%d", len(recs)), m, date, q))
		}
	}
	add(4, "2020-01-10", arrests, 1)  // January: 4 records = k-1
	add(5, "2020-02-10", arrests, 1)  // February: 5 records = k
	add(1, "2020-03-10", arrests, 11) // March: one record of quantity 11
	add(1, "2020-01-10", sites, 11)   // k counts records, not quantity
	ingest(t, s, recs)
	unbounded := uint64(math.MaxUint64)
	cell := func(month string, count uint64, suppressed uint32, lo, hi uint64) *fedreportv1.Cell {
		return &fedreportv1.Cell{Metric: arrests, Month: month, Count: count, SuppressedCells: suppressed, LowerBound: lo, UpperBound: hi}
	}
	tests := []struct {
		name string
		req  *fedreportv1.AggregateRequest
		want []*fedreportv1.Cell
	}{
		{"k-1 records are suppressed, k are shown, a month without records is left out",
			&fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{arrests}, From: "2020-01-01", To: "2020-04-30", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}},
			[]*fedreportv1.Cell{cell("2020-01", 0, 1, 1, unbounded), cell("2020-02", 5, 0, 5, 5), cell("2020-03", 0, 1, 1, unbounded)}},
		{"zero is shown as zero without group_by",
			&fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{victims}, From: "2020-01-01", To: "2020-12-31"},
			[]*fedreportv1.Cell{{Metric: victims}}},
		{"a month of k-1 records is suppressed",
			&fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{arrests}, From: "2020-01-01", To: "2020-01-31"},
			[]*fedreportv1.Cell{cell("", 0, 1, 1, unbounded)}},
		{"a window sums its months with interval arithmetic, in request order",
			&fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{sites, arrests}, From: "2020-01-01", To: "2020-12-31"},
			[]*fedreportv1.Cell{{Metric: sites, SuppressedCells: 1, LowerBound: 1, UpperBound: unbounded}, cell("", 5, 2, 7, unbounded)}},
	}
	for _, tt := range tests {
		resp, err := s.Aggregate(tt.req, "test")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if resp.GetMinCellCount() != 5 || resp.GetMember() != "FR" || resp.GetDataVersion() != 1 {
			t.Errorf("%s: response header %v", tt.name, resp)
		}
		if !slices.EqualFunc(resp.GetCells(), tt.want, func(a, b *fedreportv1.Cell) bool { return proto.Equal(a, b) }) {
			t.Errorf("%s:\ngot  %v\nwant %v", tt.name, resp.GetCells(), tt.want)
		}
	}
	mustVerify(t, s)
}

func TestAggregateRefusals(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{EarliestDate: "2019-01-01"})
	month := fedreportv1.Dimension_DIMENSION_MONTH
	tests := []struct {
		name   string
		req    *fedreportv1.AggregateRequest
		reason string // policy reason, or empty
		field  string
		msg    string
	}{
		{"a cross that is not a published table",
			&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-12-31", GroupBy: []fedreportv1.Dimension{month, fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_VICTIM_AGE}},
			ReasonTableNotPublished, "group_by", "member FR does not publish a table by offence,victim_age (published: the total (no group_by), offence, channel, victim_age, each by month or not); group by one of those"},
		{"a period before the earliest date",
			&fedreportv1.AggregateRequest{From: "2018-12-31", To: "2020-12-31"},
			ReasonPeriodNotAllowed, "from", "member FR's disclosure policy answers only from 2019-01-01 on; start the request (from 2018-12-31) on or after 2019-01-01"},
		{"from after to", &fedreportv1.AggregateRequest{From: "2020-02-01", To: "2020-01-31"}, "", "to", `to "2020-01-31" is before from 2020-02-01 (want from <= to)`},
		{"a missing from", &fedreportv1.AggregateRequest{To: "2020-01-31"}, "", "from", `from "" is required (want YYYY-MM-DD)`},
		{"a bad date", &fedreportv1.AggregateRequest{From: "2020-1-1", To: "2020-01-31"}, "", "from", `from "2020-1-1" is not a date (want YYYY-MM-DD)`},
		{"a day that does not exist", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-02-30"}, "", "to", `to "2020-02-30" does not exist (2020-02 has 29 days)`},
		{"an unspecified metric", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{0}}, "", "metrics", "is not a metric"},
		{"a metric twice", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{1, 1}}, "", "metrics", `metrics "arrests" is listed twice`},
		{"group by member", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MEMBER}}, "", "group_by", "answered by a coordinator only"},
		{"a dimension twice", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{month, month}}, "", "group_by", "is listed twice"},
		{"an unspecified dimension", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{0}}, "", "group_by", "is not a dimension"},
		{"a rollup id with a space", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", RollupId: "a b", RollupStartedAt: rollupStarted}, "", "rollup_id", "is not an id"},
	}
	for _, tt := range tests {
		_, err := s.Aggregate(tt.req, "test")
		if tt.reason != "" {
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Reason != tt.reason || pe.Field != tt.field || pe.Msg != tt.msg {
				t.Errorf("%s: got %v, want a *PolicyError %s on %s: %q", tt.name, err, tt.reason, tt.field, tt.msg)
			}
			continue
		}
		var fe *records.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: got %v, want a *records.FieldError on %s containing %q", tt.name, err, tt.field, tt.msg)
		}
	}
	// Nothing refused is logged.
	if entries, _, err := s.ListDisclosures(0, "", ""); err != nil || len(entries) != 0 {
		t.Errorf("disclosures after refusals: got %d, %v, want none", len(entries), err)
	}
	// A cross once the policy publishes it.
	s2 := openTestStore(t, Policy{Tables: [][]fedreportv1.Dimension{{fedreportv1.Dimension_DIMENSION_VICTIM_AGE, fedreportv1.Dimension_DIMENSION_OFFENCE}}})
	if _, err := s2.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_VICTIM_AGE}}, "t"); err != nil {
		t.Errorf("a published cross: %v", err)
	}
	if _, err := s2.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE}}, "t"); err == nil {
		t.Errorf("offence alone, not published: got nil error")
	}
}

func metricsOrAll(ms []fedreportv1.Metric) []fedreportv1.Metric {
	if len(ms) == 0 {
		return records.Metrics()
	}
	return ms
}

func cellKey(c *fedreportv1.Cell) string {
	return strings.Join([]string{records.MetricName(c.GetMetric()), c.GetMonth(), c.GetOffence(), c.GetChannel(), c.GetVictimAge()}, "|")
}

func TestDisclosureLog(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{})
	ingest(t, s, genRecords(t, "FR", 500, 9))
	var resps []*fedreportv1.AggregateResponse
	for i := range 5 {
		req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: fmt.Sprintf("R-%d", i), RollupStartedAt: timestamppb.New(testNow),
			GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}}
		resp, err := s.Aggregate(req, "spiffe://isa/coordinator/main")
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDisclosureSeq() != uint64(i+1) {
			t.Fatalf("disclosure_seq: got %d, want %d", resp.GetDisclosureSeq(), i+1)
		}
		resps = append(resps, resp)
	}
	var all []*fedreportv1.DisclosureEntry
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := s.ListDisclosures(2, token, "")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			if pages != 2 {
				t.Errorf("pages: got %d, want 3", pages+1)
			}
			break
		}
		token = next
	}
	if len(all) != 5 {
		t.Fatalf("entries: got %d, want 5", len(all))
	}
	prev := make([]byte, 32)
	for i, e := range all {
		resp := proto.Clone(resps[i]).(*fedreportv1.AggregateResponse)
		resp.DisclosureSeq = 0
		b, _ := deterministic.Marshal(resp)
		sum := sha256.Sum256(b)
		switch {
		case e.GetSeq() != uint64(i+1):
			t.Errorf("entry %d: seq %d", i, e.GetSeq())
		case e.GetCaller() != "spiffe://isa/coordinator/main" || e.GetRollupId() != fmt.Sprintf("R-%d", i):
			t.Errorf("entry %d: caller %q rollup %q", i, e.GetCaller(), e.GetRollupId())
		case !bytes.Equal(e.GetResponseSha256(), sum[:]):
			t.Errorf("entry %d: response_sha256 does not match the response", i)
		case !bytes.Equal(e.GetPrevHash(), prev):
			t.Errorf("entry %d: prev_hash does not link", i)
		case len(e.GetRequest().GetMetrics()) != 5:
			t.Errorf("entry %d: request not normalised: %v", i, e.GetRequest())
		case !slices.EqualFunc(e.GetCells(), resps[i].GetCells(), func(a, b *fedreportv1.Cell) bool { return proto.Equal(a, b) }):
			t.Errorf("entry %d: cells differ from the answer", i)
		case !e.GetTime().AsTime().Equal(testNow):
			t.Errorf("entry %d: time %v", i, e.GetTime().AsTime())
		}
		prev = e.GetEntryHash()
	}
	if page, _, _ := s.ListDisclosures(0, "", "2024-07-01"); len(page) != 0 {
		t.Errorf("since tomorrow: got %d entries, want 0", len(page))
	}
	if page, _, _ := s.ListDisclosures(0, "", "2024-06-30"); len(page) != 5 {
		t.Errorf("since today: got %d entries, want 5", len(page))
	}
	if _, _, err := s.ListDisclosures(0, "x", ""); err == nil {
		t.Errorf("bad page token: got nil error")
	}
	if _, _, err := s.ListDisclosures(0, "", "2024-06-31"); err == nil || err.Error() != `since "2024-06-31" does not exist (2024-06 has 30 days)` {
		t.Errorf("since a day that does not exist: got %v", err)
	}
	st, err := s.Stats()
	if err != nil || st.Disclosures != 5 || st.Records != 500 || st.DataVersion != 1 || st.SchemaVersion != SchemaVersion || st.FileSizeBytes == 0 {
		t.Errorf("stats: got %+v, %v", st, err)
	}
	mustVerify(t, s)
}

func TestConcurrentAggregatesShareCommitsAndKeepTheChain(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{})
	ingest(t, s, genRecords(t, "FR", 300, 10))
	var wg sync.WaitGroup
	seqs := make(chan uint64, 64)
	for range 8 {
		wg.Go(func() {
			for range 8 {
				resp, err := s.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30"}, "test")
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- resp.GetDisclosureSeq()
			}
		})
	}
	wg.Wait()
	close(seqs)
	var got []uint64
	for q := range seqs {
		got = append(got, q)
	}
	slices.Sort(got)
	for i, q := range got {
		if q != uint64(i+1) {
			t.Fatalf("disclosure seqs: got %v, want 1..64", got)
		}
	}
	if rep := mustVerify(t, s); rep.Disclosures != 64 {
		t.Errorf("disclosures: got %d, want 64", rep.Disclosures)
	}
}

// tamper edits the closed data file at path.
func tamper(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T) string {
		s := openTestStore(t, Policy{})
		ingest(t, s, []*fedreportv1.Record{
			{RecordId: "FR-1", Metric: arrests, Date: "2020-03-04", Offence: fedreportv1.Offence_OFFENCE_GROOMING, Channel: fedreportv1.Channel_CHANNEL_APP, Quantity: 11},
			rec("FR-2", sites, "2020-03-05", 2),
		})
		for range 3 {
			if _, err := s.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30"}, "test"); err != nil {
				t.Fatal(err)
			}
		}
		mustVerify(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return s.Path()
	}
	counterKeyOf := func(day string) []byte {
		d, _ := records.ParseDate(day)
		k := makeCounterKey(arrests, d, fedreportv1.Offence_OFFENCE_GROOMING, fedreportv1.Channel_CHANNEL_APP, 0)
		return k[:]
	}
	tests := []struct {
		name string
		edit func(tx *bolt.Tx) error
		want string
	}{
		{"a counter raised", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketCounters).Put(counterKeyOf("2020-03-04"), u64(12))
		}, "counter arrests 2020-03-04 grooming/app/unknown: stored 12, records give 11"},
		{"a counter removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketCounters).Delete(counterKeyOf("2020-03-04"))
		}, "counter arrests 2020-03-04 grooming/app/unknown: missing, records give 11"},
		{"a record removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRecords).Delete([]byte("FR-1"))
		}, "counter arrests 2020-03-04 grooming/app/unknown: stored 11, records give 0"},
		{"an entry's caller edited", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDisclosures)
			v := bytes.Clone(b.Get(u64(2)))
			e, err := decodeDisclosure(v)
			if err != nil {
				return err
			}
			e.Caller, e.EntryHash = "someone-else", nil
			body, _ := deterministic.Marshal(e)
			return b.Put(u64(2), append(v[:32:32], body...))
		}, "disclosure 2: entry hash mismatch"},
		{"an entry rehashed after editing", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDisclosures)
			e, err := decodeDisclosure(b.Get(u64(2)))
			if err != nil {
				return err
			}
			e.Cells[0].Count++
			e.EntryHash = nil
			body, _ := deterministic.Marshal(e)
			sum := sha256.Sum256(body)
			return b.Put(u64(2), append(sum[:], body...))
		}, "disclosure 3: prev_hash does not match the entry hash of disclosure 2"},
		{"an entry removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketDisclosures).Delete(u64(2))
		}, "disclosure 3: out of sequence (the log jumps from 1 to 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := build(t)
			tamper(t, path, tt.edit)
			rep, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.Problems[0] != tt.want {
				t.Errorf("got problems %q, want first %q", rep.Problems, tt.want)
			}
			if err := rep.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Err: got %v", err)
			}
		})
	}
}

func TestOpenRefusesTheWrongFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "fr.db")
	s, err := OpenStore(path, StoreOptions{Member: "FR"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a file another process holds", func(t *testing.T) {
		// Two opens in one process would share nothing but the flock, which
		// is what a second process meets too.
		_, err := OpenStore(path, StoreOptions{Member: "FR"})
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "data file is in use") {
			t.Errorf("second open: got %v, want ErrInUse", err)
		}
		if _, err := Verify(path); !errors.Is(err, ErrInUse) {
			t.Errorf("verify of a held file: got %v, want ErrInUse", err)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = OpenStore(path, StoreOptions{Member: "IT"})
	var me *MemberMismatchError
	if !errors.As(err, &me) || me.Stored != "FR" || me.Configured != "IT" {
		t.Errorf("open as IT: got %v, want a *MemberMismatchError", err)
	}

	tamper(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchemaVersion, u32(99)) })
	_, err = OpenStore(path, StoreOptions{Member: "FR"})
	var se *SchemaVersionError
	if !errors.As(err, &se) || se.Found != 99 {
		t.Errorf("open schema 99: got %v, want a *SchemaVersionError", err)
	}
	if want := "has schema version 99; this fedreport reads version 1"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("message: got %v, want it to contain %q", err, want)
	}

	other := filepath.Join(dir, "other.db")
	tamper(t, other, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("stuff")); return err })
	if _, err := OpenStore(other, StoreOptions{Member: "FR"}); !errors.As(err, &se) {
		t.Errorf("open a foreign bbolt file: got %v, want a *SchemaVersionError", err)
	}
	if _, err := OpenStore(filepath.Join(dir, "x.db"), StoreOptions{Member: "fr"}); err == nil {
		t.Errorf("open with member fr: got nil error")
	}
	if _, err := OpenStore(filepath.Join(dir, "y.db"), StoreOptions{Member: "FR", Policy: Policy{Tables: [][]fedreportv1.Dimension{{1}}}}); err == nil {
		t.Errorf("open with member in the policy: got nil error")
	}
}

func TestClosedStore(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31"}, "t"); !errors.Is(err, ErrClosed) {
		t.Errorf("Aggregate: got %v, want ErrClosed", err)
	}
	if _, err := s.BeginIngest(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("BeginIngest: got %v, want ErrClosed", err)
	}
	if _, err := s.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats: got %v, want ErrClosed", err)
	}
}

// safeBuffer is a bytes.Buffer for a logger written from several goroutines.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestVerifyReportsADamagedFile(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{})
	ingest(t, s, genRecords(t, "FR", 3000, 14))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(s.Path())
	if err != nil || !rep.OK() {
		t.Fatalf("clean file: %v, %v", rep, err)
	}
	if got := rep.String(); !strings.Contains(got, "3000 records") || !strings.Contains(got, "ok: counters equal the records") {
		t.Errorf("String: got %q", got)
	}
	// Zero every page but the two meta pages.
	f, err := os.OpenFile(s.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	pageSize := int64(os.Getpagesize())
	if _, err := f.WriteAt(make([]byte, fi.Size()-2*pageSize), 2*pageSize); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	rep, err = Verify(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatalf("damaged file: got no problem")
	}
	if got := rep.String(); !rep.Damaged || !strings.Contains(got, "not checked: the file is damaged") || !strings.HasSuffix(got, "restore it from a backup") {
		t.Errorf("String: got %q, want the damage and what to do", got)
	}
	if !strings.Contains(rep.Problems[0], "the file is damaged") {
		t.Errorf("first problem: got %q, want a damaged file", rep.Problems[0])
	}
}

// withoutTiming returns sum without the time its release took.
func withoutTiming(sum Summary) Summary {
	sum.ReleaseTook = 0
	return sum
}
