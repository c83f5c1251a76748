package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func mustDay(s string) uint32 {
	d, err := records.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// operationPolicy is the demo's: the operation and its two phases.
func operationPolicy() Policy {
	return Policy{MinCellCount: 5, Periods: []periods.Period{
		{Name: "isa-2020", From: mustDay("2020-01-01"), To: mustDay("2020-09-30")},
		{Name: "phase-1", From: mustDay("2020-01-01"), To: mustDay("2020-05-30")},
		{Name: "phase-2", From: mustDay("2020-06-01"), To: mustDay("2020-09-30")},
	}}
}

// randomRecords returns n records of the operation with random cells.
func randomRecords(seed uint64, n int, prefix string) []*fedreportv1.Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]*fedreportv1.Record, n)
	for i := range out {
		m := []fedreportv1.Metric{arrests, victims}[rng.IntN(2)]
		day := mustDay("2020-01-01") + uint32(rng.IntN(274))
		r := &fedreportv1.Record{
			RecordId: fmt.Sprintf("%s-%d", prefix, i), Metric: m, Date: records.DateString(day), Quantity: 1,
			Offence: fedreportv1.Offence(rng.IntN(nOffences)), Channel: fedreportv1.Channel(rng.IntN(nChannels)),
		}
		if m == victims {
			r.VictimAge = fedreportv1.VictimAge(rng.IntN(nVictimAges))
		}
		out[i] = r
	}
	return out
}

func agg(t *testing.T, s *Store, from, to string, by ...fedreportv1.Dimension) *fedreportv1.AggregateResponse {
	t.Helper()
	resp, err := s.Aggregate(&fedreportv1.AggregateRequest{From: from, To: to, GroupBy: by, Metrics: []fedreportv1.Metric{arrests}}, "test")
	if err != nil {
		t.Fatalf("Aggregate %s..%s by %v: %v", from, to, by, err)
	}
	return resp
}

func TestReleaseKeepsTotalsExactAndAnswersSumTheRelease(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	recs := randomRecords(1, 400, "r")
	ingest(t, s, recs)
	want := map[string]uint64{}
	for _, r := range recs {
		if r.GetMetric() != arrests {
			continue
		}
		d := mustDay(r.GetDate())
		want["op"]++
		if d <= mustDay("2020-05-30") {
			want["p1"]++
		}
		if d >= mustDay("2020-06-01") {
			want["p2"]++
		}
	}
	for name, w := range map[string][2]string{"op": {"2020-01-01", "2020-09-30"}, "p1": {"2020-01-01", "2020-05-30"}, "p2": {"2020-06-01", "2020-09-30"}} {
		c := agg(t, s, w[0], w[1]).GetCells()[0]
		if c.GetSuppressedCells() != 0 || c.GetCount() != want[name] {
			t.Errorf("%s total = %d (%d suppressed), want exactly %d", name, c.GetCount(), c.GetSuppressedCells(), want[name])
		}
	}
	// Every suppressed cell's bounds hold its true value.
	truth := map[string]uint64{}
	for _, r := range recs {
		if r.GetMetric() == arrests && r.GetDate() >= "2020-03-01" && r.GetDate() <= "2020-03-31" {
			truth[records.OffenceName(r.GetOffence())]++
		}
	}
	for _, c := range agg(t, s, "2020-03-01", "2020-03-31", fedreportv1.Dimension_DIMENSION_OFFENCE).GetCells() {
		v := truth[c.GetOffence()]
		if c.GetSuppressedCells() == 0 && c.GetCount() != v {
			t.Errorf("March %s = %d, want %d", c.GetOffence(), c.GetCount(), v)
		}
		if c.GetLowerBound() > v || c.GetUpperBound() < v {
			t.Errorf("March %s: bounds [%d, %d] do not hold %d", c.GetOffence(), c.GetLowerBound(), c.GetUpperBound(), v)
		}
		if c.GetSuppressedCells() == 0 && v > 0 && v < 5 {
			t.Errorf("March %s = %d published exactly, below k", c.GetOffence(), v)
		}
	}
}

func TestMonthTotalMinusExactOffencesDoesNotGiveTheSuppressedOne(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	var recs []*fedreportv1.Record
	add := func(n int, off fedreportv1.Offence) {
		for range n {
			recs = append(recs, &fedreportv1.Record{RecordId: fmt.Sprintf("m%d", len(recs)), Metric: arrests, Date: "2020-03-10", Offence: off, Channel: fedreportv1.Channel_CHANNEL_APP})
		}
	}
	add(20, fedreportv1.Offence_OFFENCE_GROOMING)
	add(12, fedreportv1.Offence_OFFENCE_SEXTORTION)
	add(2, fedreportv1.Offence_OFFENCE_LIVE_STREAMING)
	ingest(t, s, recs)
	total := agg(t, s, "2020-03-01", "2020-03-31").GetCells()[0]
	var exact uint64
	suppressed := 0
	for _, c := range agg(t, s, "2020-03-01", "2020-03-31", fedreportv1.Dimension_DIMENSION_OFFENCE).GetCells() {
		if c.GetSuppressedCells() == 0 {
			exact += c.GetCount()
		} else {
			suppressed++
		}
	}
	if total.GetSuppressedCells() == 0 && suppressed == 1 {
		t.Errorf("the March total (%d) minus the exact offences (%d) gives the one suppressed offence", total.GetCount(), exact)
	}
	if suppressed < 2 && total.GetSuppressedCells() == 0 {
		t.Errorf("%d offences suppressed under an exact total, want 2 or more", suppressed)
	}
}

func TestUnalignedWindowsAndUnpublishedTablesAreRefused(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	ingest(t, s, randomRecords(2, 50, "r"))
	for _, tc := range []struct {
		from, to string
		by       []fedreportv1.Dimension
		reason   string
		says     string
	}{
		{"2020-03-01", "2020-03-30", nil, ReasonPeriodNotAligned, "nearest allowed: 2020-03-01..2020-03-31"},
		{"2020-05-31", "2020-05-31", nil, ReasonPeriodNotAligned, "phase-1 (2020-01-01..2020-05-30)"},
		{"2020-01-01", "2020-05-30", []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}, ReasonPeriodNotAligned, "by month"},
		{"2020-03-01", "2020-03-31", []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_CHANNEL}, ReasonTableNotPublished, "offence,channel"},
	} {
		before, _ := s.DataVersion()
		_, err := s.Aggregate(&fedreportv1.AggregateRequest{From: tc.from, To: tc.to, GroupBy: tc.by}, "test")
		var pe *PolicyError
		if !errors.As(err, &pe) || pe.Reason != tc.reason || !strings.Contains(pe.Msg, tc.says) {
			t.Errorf("%s..%s by %v: got %v, want %s saying %q", tc.from, tc.to, tc.by, err, tc.reason, tc.says)
		}
		if after, _ := s.DataVersion(); after != before {
			t.Errorf("a refusal changed the data version")
		}
	}
}

func TestBadPoliciesAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p     Policy
		field string
	}{
		{Policy{MinCellCount: 2}, "min_cell_count"},
		{Policy{Tables: [][]fedreportv1.Dimension{{fedreportv1.Dimension_DIMENSION_MONTH}}}, "tables[0]"},
		{Policy{Periods: []periods.Period{{Name: "a", From: 10, To: 20}, {Name: "b", From: 15, To: 30}}}, "periods"},
		{Policy{DominancePercent: 150}, "dominance_percent"},
	} {
		_, _, err := tc.p.normalize()
		var pe *PolicyConfigError
		if !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("normalize(%+v) = %v, want an error on %s", tc.p, err, tc.field)
		}
	}
}

func TestASmallIngestDoesNotShowInTheTotals(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	ingest(t, s, randomRecords(3, 400, "r"))
	before := agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0]
	ingest(t, s, []*fedreportv1.Record{rec("new-1", arrests, "2020-03-05", 1), rec("new-2", arrests, "2020-03-06", 1)})
	after := agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0]
	if after.GetSuppressedCells() == 0 && after.GetCount() != before.GetCount() {
		t.Errorf("the operation's total moved from %d to %d exactly: the batch of 2 shows", before.GetCount(), after.GetCount())
	}
	if after.GetPending() && after.GetCount() != before.GetCount() {
		t.Errorf("a pending total shows %d, want the held %d", after.GetCount(), before.GetCount())
	}
	if after.GetUpperBound() < before.GetCount()+2 || after.GetLowerBound() > before.GetCount()+2 {
		t.Errorf("bounds [%d, %d] do not hold the true total %d", after.GetLowerBound(), after.GetUpperBound(), before.GetCount()+2)
	}
}

func TestACoordinatorIsAnsweredOnlyWithinARunningRollup(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	ingest(t, s, randomRecords(4, 50, "r"))
	coord := "spiffe://isa/coordinator/main"
	ago := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(-d)) }
	for _, tc := range []struct {
		name, id string
		started  *timestamppb.Timestamp
		field    string
	}{
		{"no rollup id", "", ago(time.Minute), "rollup_id"},
		{"no start", "r00000007", nil, "rollup_started_at"},
		{"started 18 minutes ago", "r00000007", ago(18 * time.Minute), "rollup_started_at"},
		{"starting in 3 minutes", "r00000007", ago(-3 * time.Minute), "rollup_started_at"},
	} {
		req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: tc.id, RollupStartedAt: tc.started}
		var pe *PolicyError
		if _, err := s.Aggregate(req, coord); !errors.As(err, &pe) || pe.Reason != grpcsrv.ReasonRollupNotRunning || pe.Field != tc.field {
			t.Errorf("%s: got %v, want %s on %s", tc.name, err, grpcsrv.ReasonRollupNotRunning, tc.field)
		}
	}
	// Started a minute ago, asked again (a retry), and started by a clock a
	// minute ahead of the node's: answered. Ids alone are not unique (a
	// coordinator on a new data file numbers from r00000001 again): the log
	// keeps each answer's id and start.
	for _, started := range []*timestamppb.Timestamp{ago(time.Minute), ago(time.Minute), ago(-time.Minute)} {
		req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: "r00000007", RollupStartedAt: started}
		if _, err := s.Aggregate(req, coord); err != nil {
			t.Fatalf("rollup r00000007 started at %v: %v", started.AsTime(), err)
		}
	}
	entries, _, err := s.ListDisclosures(0, "", "")
	if err != nil || len(entries) != 3 {
		t.Fatalf("the log: got %v, %v; want three entries", entries, err)
	}
	for i, e := range entries {
		req := e.GetRequest()
		if e.GetRollupId() != "r00000007" || e.GetReleaseVersion() == 0 || !req.GetRollupStartedAt().AsTime().Equal(testNow.Add([]time.Duration{-time.Minute, -time.Minute, time.Minute}[i])) {
			t.Errorf("entry %d: rollup %s started %v, release %d; want r00000007, its start and a release version", i, e.GetRollupId(), req.GetRollupStartedAt().AsTime(), e.GetReleaseVersion())
		}
	}
	// A member admin asks outside any rollup.
	if _, err := s.Aggregate(&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30"}, "spiffe://isa/member-admin/FR/ops"); err != nil {
		t.Errorf("a member admin without a rollup id: %v", err)
	}
}

// A live node ingests in small batches. A cell withheld while it was small,
// and a total held pending after a small batch, are published again once
// later batches make them publishable: the release must not freeze a node's
// results at the first small batch.
func TestCellsWithheldWhileSmallArePublishedOnceTheyGrow(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, operationPolicy())
	ingest(t, s, randomRecords(5, 400, "r"))
	grooming := func() *fedreportv1.Cell {
		for _, c := range agg(t, s, "2020-10-01", "2020-10-31", fedreportv1.Dimension_DIMENSION_OFFENCE).GetCells() {
			if c.GetOffence() == "grooming" {
				return c
			}
		}
		t.Fatal("no grooming cell for October")
		return nil
	}
	total := func() *fedreportv1.Cell { return agg(t, s, "2020-01-01", "2020-09-30").GetCells()[0] }
	opBefore := total().GetCount()

	// October starts with 2 grooming arrests: withheld. The operation's
	// total takes 2 more in March: held, pending.
	batch := func(prefix, date string, n int) {
		var recs []*fedreportv1.Record
		for i := range n {
			r := rec(fmt.Sprintf("%s-%d", prefix, i), arrests, date, 1)
			r.Offence, r.Channel = fedreportv1.Offence_OFFENCE_GROOMING, fedreportv1.Channel_CHANNEL_APP
			recs = append(recs, r)
		}
		ingest(t, s, recs)
	}
	batch("oct-a", "2020-10-05", 2)
	batch("mar-a", "2020-03-05", 2)
	if c := grooming(); c.GetSuppressedCells() == 0 && c.GetCount() == 2 {
		t.Fatalf("October grooming published at 2 records")
	}
	if c := total(); !c.GetPending() && c.GetCount() == opBefore+2 {
		t.Fatalf("the operation's total moved by the batch of 2 exactly")
	}

	// Later batches make both grow by far more than k.
	batch("oct-b", "2020-10-12", 20)
	batch("mar-b", "2020-03-12", 20)
	batch("oct-c", "2020-10-19", 20)
	batch("mar-c", "2020-03-19", 20)
	if c := grooming(); c.GetSuppressedCells() != 0 || c.GetPending() || c.GetCount() != 42 {
		t.Errorf("October grooming, 42 records after three batches: got %d (suppressed %d, pending %v, bounds %d..%d), want 42 published",
			c.GetCount(), c.GetSuppressedCells(), c.GetPending(), c.GetLowerBound(), c.GetUpperBound())
	}
	if c := total(); c.GetPending() || c.GetSuppressedCells() != 0 || c.GetCount() != opBefore+42 {
		t.Errorf("the operation's total after batches of 2, 20 and 20: got %d (pending %v, suppressed %d), want %d published",
			c.GetCount(), c.GetPending(), c.GetSuppressedCells(), opBefore+42)
	}
}
