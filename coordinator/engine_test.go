package coordinator

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/metrics"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

const requester = "spiffe://isa/operator/alice"

var wholeOperation = &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests, victims, sites}}

// memberStatuses returns "FR=ok IT=timeout ..." for a rollup.
func memberStatuses(r *fedreportv1.Rollup) string {
	var parts []string
	for _, m := range r.GetMembers() {
		parts = append(parts, m.GetMember()+"="+memberStatusName(m.GetStatus()))
	}
	return strings.Join(parts, " ")
}

// totalsOf returns the totals as "metric:count" or "metric:lower-upper/s".
func totalsOf(r *fedreportv1.Rollup) []string {
	var out []string
	for _, c := range r.GetTotals() {
		key := metricName(c.GetMetric())
		for _, v := range []string{c.GetMember(), c.GetMonth(), c.GetOffence(), c.GetChannel(), c.GetVictimAge()} {
			if v != "" {
				key += "/" + v
			}
		}
		if c.GetSuppressedCells() == 0 {
			out = append(out, key+"="+u64(c.GetCount()))
		} else {
			out = append(out, key+"="+u64(c.GetCount())+"+"+u64(uint64(c.GetSuppressedCells()))+"s["+u64(c.GetLowerBound())+","+u64(c.GetUpperBound())+"]")
		}
	}
	return out
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRollupEveryMemberAnsweringIsCompleteWithExactTotals(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{
		aggregate: answers("FR", 5, exact(arrests, 500), exact(victims, 300), exact(sites, 400)),
		describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: "FR", SoftwareVersion: "fedreport 1.2.3", DataVersion: 7}, nil
		},
	}
	it := &fakeNode{aggregate: answers("IT", 5, exact(arrests, 200), exact(victims, 149), exact(sites, 0))}
	es := &fakeNode{aggregate: answers("ES", 5, exact(arrests, 71), exact(victims, 100), exact(sites, 180))}
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), es)},
	))

	r, err := c.StartRollup(t.Context(), wholeOperation, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_COMPLETE; got != want {
		t.Fatalf("state: got %v, want %v (members %s)", got, want, memberStatuses(r))
	}
	if got, want := totalsOf(r), []string{"arrests=771", "victims_identified=549", "sites_blocked=580"}; !slices.Equal(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	if got, want := memberStatuses(r), "FR=ok IT=ok ES=ok"; got != want {
		t.Errorf("members: got %q, want %q", got, want)
	}
	if len(r.GetMissingMembers()) != 0 {
		t.Errorf("missing members: got %v, want none", r.GetMissingMembers())
	}
	if got, want := r.GetId(), "r00000001"; got != want {
		t.Errorf("id: got %q, want %q", got, want)
	}
	if r.GetRequestedBy() != requester || r.GetStartedAt() == nil || r.GetFinishedAt() == nil {
		t.Errorf("requested_by %q started_at %v finished_at %v: want all set", r.GetRequestedBy(), r.GetStartedAt(), r.GetFinishedAt())
	}
	frRes := r.GetMembers()[0]
	if got, want := frRes.GetSoftwareVersion(), "fedreport 1.2.3"; got != want {
		t.Errorf("FR software version: got %q, want %q", got, want)
	}
	if frRes.GetDataVersion() != 7 || frRes.GetMinCellCount() != 5 || frRes.GetLatency() == nil {
		t.Errorf("FR result: got data version %d, k %d, latency %v; want 7, 5, set", frRes.GetDataVersion(), frRes.GetMinCellCount(), frRes.GetLatency())
	}
	// Without member grouping each member's own cells are still kept.
	wantIT := []*fedreportv1.Cell{exact(arrests, 200), exact(victims, 149), exact(sites, 0)}
	if got := r.GetMembers()[1].GetCells(); !slices.EqualFunc(got, wantIT, func(a, b *fedreportv1.Cell) bool { return proto.Equal(a, b) }) {
		t.Errorf("IT cells: got %v, want %v", got, wantIT)
	}

	// Every member got the request with the rollup id.
	for _, f := range []*fakeNode{fr, it, es} {
		reqs := f.requests()
		if len(reqs) != 1 {
			t.Fatalf("requests: got %d, want 1", len(reqs))
		}
		want := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", Metrics: wholeOperation.Metrics, RollupId: r.GetId(), RollupStartedAt: r.GetStartedAt()}
		if !proto.Equal(reqs[0], want) {
			t.Errorf("request: got %v, want %v", reqs[0], want)
		}
	}

	// The rollup is stored as returned.
	got, err := c.GetRollup(t.Context(), r.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, r) {
		t.Errorf("stored rollup differs from the returned one:\n got %v\nwant %v", got, r)
	}

	// One log line per rollup, with statuses and never a count: neither a
	// member's nor a total. The check reads the records, as whole numbers, so
	// that a timestamp or the temporary data path cannot make it fail.
	log := c.log.String()
	if !strings.Contains(log, "rollup finished") || !strings.Contains(log, "FR=ok IT=ok ES=ok") {
		t.Errorf("log lacks the rollup line:\n%s", log)
	}
	logged := c.records.numbers()
	for _, n := range []uint64{500, 300, 400, 200, 149, 71, 100, 180, 771, 549, 580} {
		if logged[u64(n)] {
			t.Errorf("log contains count %d:\n%s", n, log)
		}
	}
}

func TestRollupWithoutMetricsAsksForEveryMetricAndTotalsZeros(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	all := func(_ context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		resp := &fedreportv1.AggregateResponse{Member: "FR", MinCellCount: 5}
		for _, m := range req.GetMetrics() {
			resp.Cells = append(resp.Cells, exact(m, 0))
		}
		return resp, nil
	}
	fr := &fakeNode{aggregate: all}
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)}))
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01"}, requester)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"arrests=0", "victims_identified=0", "sites_blocked=0", "judicial_referrals=0", "reports_received=0"}
	if got := totalsOf(r); !slices.Equal(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	if got := fr.requests()[0].GetMetrics(); len(got) != 5 {
		t.Errorf("metrics asked: got %v, want all five", got)
	}
}

func TestRollupGroupedByMemberKeepsOneCellPerMemberAndKey(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5,
		withMonth(exact(arrests, 10), "2020-02"), withMonth(exact(arrests, 20), "2020-01"))}
	it := &fakeNode{aggregate: answers("IT", 5,
		withMonth(exact(arrests, 7), "2020-01"), withMonth(suppressed(arrests, 5), "2020-03"))}
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)},
	))
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-03-31",
		Metrics: []fedreportv1.Metric{arrests},
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_MEMBER}}
	r, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"arrests/FR/2020-01=20",
		"arrests/IT/2020-01=7",
		"arrests/FR/2020-02=10",
		"arrests/IT/2020-03=0+1s[1,4]",
	}
	if got := totalsOf(r); !slices.Equal(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	// Members are asked without DIMENSION_MEMBER.
	got := fr.requests()[0].GetGroupBy()
	if !slices.Equal(got, []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}) {
		t.Errorf("group_by sent to members: got %v, want [month]", got)
	}
}

// Members may list their cells in any order; a rollup lists its totals and
// each member's cells by metric, then by the grouped dimensions in group_by
// order: members in registry order, months by date, offences and channels
// in enum order with unknown first. The expected order and sums here are
// worked out from the names, not from the coordinator's ids.
func TestRollupListsCellsInGroupByOrderWhateverTheMembersOrder(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	codes := []string{"SG", "FR", "IT"} // registry order, not alphabetical
	type key struct {
		metric                          fedreportv1.Metric
		member, month, offence, channel string
	}
	// order is group_by's: channel, member, month, offence.
	order := func(a, b key) int {
		return cmp.Or(cmp.Compare(a.metric, b.metric),
			cmp.Compare(slices.Index(channelNames, a.channel), slices.Index(channelNames, b.channel)),
			cmp.Compare(slices.Index(codes, a.member), slices.Index(codes, b.member)),
			strings.Compare(a.month, b.month),
			cmp.Compare(slices.Index(offenceNames, a.offence), slices.Index(offenceNames, b.offence)))
	}
	line := func(k key, n uint64) string {
		return fmt.Sprintf("%s/%s/%s/%s/%s=%d", metricName(k.metric), k.member, k.month, k.offence, k.channel, n)
	}
	sums := map[key]uint64{}
	wantCells := map[string][]string{}
	var members []Member
	for i, code := range codes {
		rng := rand.New(rand.NewPCG(uint64(i), 2020))
		var cells []*fedreportv1.Cell
		var keys []key
		answered := map[key]uint64{}
		for _, m := range []fedreportv1.Metric{victims, arrests} {
			for _, month := range []string{"2020-10", "2020-02", "2019-12"} {
				for _, offence := range offenceNames {
					for _, channel := range channelNames {
						n := uint64(5 + rng.IntN(20))
						c := exact(m, n)
						c.Month, c.Offence, c.Channel = month, offence, channel
						cells = append(cells, c)
						k := key{m, "", month, offence, channel}
						keys = append(keys, k)
						answered[k] = n
						k.member = code
						sums[k] += n
					}
				}
			}
		}
		slices.SortFunc(keys, order)
		for _, k := range keys {
			wantCells[code] = append(wantCells[code], line(k, answered[k]))
		}
		rng.Shuffle(len(cells), func(a, b int) { cells[a], cells[b] = cells[b], cells[a] })
		members = append(members, Member{code, startNode(t, ca, identity.Node(td, code), &fakeNode{aggregate: answers(code, 5, cells...)})})
	}
	c := newCoordinator(t, ca, testConfig(t, ca, members...))
	spec := &fedreportv1.RollupSpec{From: "2019-12-01", To: "2020-10-31", GroupBy: []fedreportv1.Dimension{
		fedreportv1.Dimension_DIMENSION_CHANNEL, fedreportv1.Dimension_DIMENSION_MEMBER,
		fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}}
	r, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("state %v: %s", r.GetState(), memberStatuses(r))
	}
	keyOf := func(c *fedreportv1.Cell) key {
		return key{c.GetMetric(), c.GetMember(), c.GetMonth(), c.GetOffence(), c.GetChannel()}
	}
	keys := slices.SortedFunc(maps.Keys(sums), order)
	var want, got []string
	for _, k := range keys {
		want = append(want, line(k, sums[k]))
	}
	for _, c := range r.GetTotals() {
		got = append(got, line(keyOf(c), c.GetCount()))
	}
	if !slices.Equal(got, want) {
		t.Errorf("totals: got %d, want %d; first got %q, want %q", len(got), len(want), got[:min(3, len(got))], want[:3])
	}
	for _, m := range r.GetMembers() {
		var got []string
		for _, c := range m.GetCells() {
			got = append(got, line(keyOf(c), c.GetCount()))
		}
		if want := wantCells[m.GetMember()]; !slices.Equal(got, want) {
			t.Errorf("%s cells: got %d, want %d; first got %q, want %q", m.GetMember(), len(got), len(want), got[:min(3, len(got))], want[:3])
		}
	}
}

// A result larger than the coordinator keeps is a FAILED rollup without
// cells that says how to ask for less; smaller rollups go on as before.
func TestRollupLargerThanTheLimitFails(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	// Each member answers 40 months when asked by month, one cell otherwise.
	monthly := func(code string) *fakeNode {
		return &fakeNode{aggregate: func(_ context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
			resp := &fedreportv1.AggregateResponse{Member: code, MinCellCount: 5, DataVersion: 7}
			if len(req.GetGroupBy()) == 0 {
				resp.Cells = []*fedreportv1.Cell{exact(arrests, 40*10)}
				return resp, nil
			}
			for i := range 40 {
				resp.Cells = append(resp.Cells, withMonth(exact(arrests, 10), fmt.Sprintf("%d-%02d", 2000+i/12, 1+i%12)))
			}
			return resp, nil
		}}
	}
	cfg := testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), monthly("FR"))},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), monthly("IT"))},
	)
	const limit = 2048
	cfg.MaxRollupBytes = limit
	c := newCoordinator(t, ca, cfg)
	spec := &fedreportv1.RollupSpec{From: "2000-01-01", To: "2003-04-30", Metrics: []fedreportv1.Metric{arrests}}
	small, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil || small.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || !slices.Equal(totalsOf(small), []string{"arrests=800"}) {
		t.Fatalf("ungrouped: %v, %v", small, err)
	}
	spec.GroupBy = []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}
	big, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	wantReason := regexp.MustCompile(`^the result would be 120 cells in (\d+) bytes, over the coordinator's limit of 2048 bytes for one rollup; ask for a shorter period \(from, to\) or group by fewer dimensions$`)
	m := wantReason.FindStringSubmatch(big.GetFailureReason())
	if big.GetState() != fedreportv1.RollupState_ROLLUP_STATE_FAILED || m == nil || len(big.GetTotals()) != 0 {
		t.Fatalf("by month: state %v, reason %q, %d totals; want FAILED for its size, without totals", big.GetState(), big.GetFailureReason(), len(big.GetTotals()))
	}
	if size, _ := strconv.Atoi(m[1]); size <= limit {
		t.Errorf("reason gives %d bytes, not over the limit", size)
	}
	for _, mr := range big.GetMembers() {
		if mr.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK || len(mr.GetCells()) != 0 {
			t.Errorf("member %s: %v with %d cells, want ok without cells", mr.GetMember(), mr.GetStatus(), len(mr.GetCells()))
		}
	}
	stored, err := c.GetRollup(t.Context(), big.GetId())
	if err != nil || !proto.Equal(stored, big) {
		t.Errorf("stored: %v, %v; want what StartRollup returned", stored, err)
	}
}

func TestRollupSumsSuppressedCellsIntoHonestBounds(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	// FR knows 10, IT withheld one cell under k=5, ES one under k=3.
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), &fakeNode{aggregate: answers("IT", 5, suppressed(arrests, 5))})},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), &fakeNode{aggregate: answers("ES", 3, suppressed(arrests, 3))})},
	))
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	want := &fedreportv1.Cell{Metric: arrests, Count: 10, SuppressedCells: 2, LowerBound: 12, UpperBound: 10 + 4 + 2}
	if len(r.GetTotals()) != 1 || !proto.Equal(r.GetTotals()[0], want) {
		t.Errorf("totals: got %v, want [%v]", r.GetTotals(), want)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Errorf("state: got %v, want COMPLETE", r.GetState())
	}
}

func TestRollupSumsTheMembersOwnBoundsAndMarksPendingTotals(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	answer := func(code string, release uint64, cells ...*fedreportv1.Cell) *fakeNode {
		return &fakeNode{aggregate: func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
			return &fedreportv1.AggregateResponse{Member: code, MinCellCount: 5, DataVersion: 7, ReleaseVersion: release, Cells: cells}, nil
		}}
	}
	// FR publishes 10 exactly. IT's release withholds a cell with bounds
	// 0..7, as secondary suppression may (not 1..k-1). ES holds 20, the
	// value of an earlier release, while 1..2 records are pending: its
	// bounds hold the true value. GB is a node of today, withholding 1..4.
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), answer("FR", 3, exact(arrests, 10)))},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), answer("IT", 5, &fedreportv1.Cell{Metric: arrests, SuppressedCells: 1, LowerBound: 0, UpperBound: 7}))},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), answer("ES", 9, &fedreportv1.Cell{Metric: arrests, Count: 20, LowerBound: 21, UpperBound: 22, Pending: true}))},
		Member{"GB", startNode(t, ca, identity.Node(td, "GB"), answer("GB", 0, suppressed(arrests, 5)))},
	))
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("state: got %v (%s), want COMPLETE", r.GetState(), memberStatuses(r))
	}
	want := &fedreportv1.Cell{Metric: arrests, Count: 10 + 0 + 20 + 0, SuppressedCells: 2, LowerBound: 10 + 0 + 21 + 1, UpperBound: 10 + 7 + 22 + 4, Pending: true}
	if len(r.GetTotals()) != 1 || !proto.Equal(r.GetTotals()[0], want) {
		t.Errorf("totals: got %v, want [%v]", r.GetTotals(), want)
	}
	var releases []uint64
	for _, m := range r.GetMembers() {
		releases = append(releases, m.GetReleaseVersion())
	}
	if want := []uint64{3, 5, 9, 0}; !slices.Equal(releases, want) {
		t.Errorf("members' release versions: got %v, want %v", releases, want)
	}
}

func TestRollupTotalsSaturateRatherThanWrap(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, math.MaxUint64-1))})},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), &fakeNode{aggregate: answers("IT", 5, &fedreportv1.Cell{Metric: arrests, Count: 2, SuppressedCells: 1, LowerBound: 3, UpperBound: 9})})},
	))
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	want := &fedreportv1.Cell{Metric: arrests, Count: math.MaxUint64, SuppressedCells: 1, LowerBound: math.MaxUint64, UpperBound: math.MaxUint64}
	if len(r.GetTotals()) != 1 || !proto.Equal(r.GetTotals()[0], want) {
		t.Errorf("totals: got %v, want [%v]", r.GetTotals(), want)
	}
	if got := memberStatuses(r); got != "FR=ok IT=ok" {
		t.Errorf("members: got %s, want both summed", got)
	}
}

func TestRollupMissingMembersMakeItPartial(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	entered := make(chan struct{}, 1)
	hung := &fakeNode{aggregate: func(ctx context.Context, _ *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	refusing := &fakeNode{aggregate: func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		return nil, status.Error(codes.FailedPrecondition, "victim_age is not an allowed dimension")
	}}
	const timeout = 300 * time.Millisecond
	cfg := testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", closedAddr(t)},
		Member{"SG", startNode(t, ca, identity.Node(td, "SG"), hung)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), refusing)},
		Member{"BH", startNode(t, ca, identity.Node(td, "BH"), &fakeNode{aggregate: answers("BH", 5, exact(arrests, 1))})},
	)
	cfg.MemberTimeout = timeout
	c := newCoordinator(t, ca, cfg)

	start := time.Now()
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	<-entered
	if elapsed < timeout || elapsed > timeout+5*time.Second {
		t.Errorf("rollup took %v, want about the member timeout %v", elapsed, timeout)
	}
	if got, want := r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_PARTIAL; got != want {
		t.Errorf("state: got %v, want %v", got, want)
	}
	if got, want := memberStatuses(r), "FR=ok IT=unreachable SG=timeout ES=refused BH=ok"; got != want {
		t.Errorf("members: got %q, want %q", got, want)
	}
	if got, want := r.GetMissingMembers(), []string{"IT", "SG", "ES"}; !slices.Equal(got, want) {
		t.Errorf("missing members: got %v, want %v", got, want)
	}
	if got, want := totalsOf(r), []string{"arrests=11"}; !slices.Equal(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	if got := r.GetMembers()[3].GetReason(); !strings.Contains(got, "victim_age is not an allowed dimension") || !strings.Contains(got, "FAILED_PRECONDITION") {
		t.Errorf("ES reason: got %q, want the node's reason and code", got)
	}
	// The status says unreachable; the reason says how, once.
	if got := r.GetMembers()[1].GetReason(); !strings.Contains(got, "connection refused") || strings.Contains(got, "unreachable") {
		t.Errorf("IT reason: got %q, want gRPC's words for it, without repeating the status", got)
	}
	for _, i := range []int{1, 2, 3} {
		if cells := r.GetMembers()[i].GetCells(); len(cells) != 0 {
			t.Errorf("%s cells: got %v, want none", r.GetMembers()[i].GetMember(), cells)
		}
	}
}

func TestRollupWithAMemberDownReturnsQuickly(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", closedAddr(t)},
	))
	start := time.Now()
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > DefaultMemberTimeout/2 {
		t.Errorf("rollup took %v with a closed port, want well under the member timeout %v", elapsed, DefaultMemberTimeout)
	}
	if got, want := memberStatuses(r), "FR=ok IT=unreachable"; got != want {
		t.Errorf("members: got %q, want %q", got, want)
	}
	if got, want := r.GetMissingMembers(), []string{"IT"}; !slices.Equal(got, want) {
		t.Errorf("missing: got %v, want %v", got, want)
	}
}

// TestLatencyOfAMemberDownIncludesTheWaitForIt runs two rollups with IT
// down: in the second, the wait for IT to reconnect comes before its call,
// and IT's latency must still account for the time the rollup spent on it.
func TestLatencyOfAMemberDownIncludesTheWaitForIt(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", closedAddr(t)},
	))
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}
	for i := range 2 {
		r, err := c.StartRollup(t.Context(), spec, requester)
		if err != nil {
			t.Fatal(err)
		}
		took := r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime())
		if got := r.GetMembers()[1].GetLatency().AsDuration(); got < took/2 {
			t.Errorf("rollup %d took %v, IT's latency: got %v, want most of it", i+1, took, got)
		}
	}
}

func TestRollupCountsAMemberThatCameBack(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	addr := closedAddr(t)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", addr}))
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}
	r, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberStatuses(r), "FR=unreachable"; got != want {
		t.Fatalf("while down: got %q, want %q", got, want)
	}
	startNodeAt(t, ca, addr, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})
	r, err = c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberStatuses(r), "FR=ok"; got != want {
		t.Errorf("after coming back: got %q, want %q (%s)", got, want, r.GetMembers()[0].GetReason())
	}
}

func TestRollupRefusesAnotherMembersCertificateAtAMembersAddress(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	// A valid node certificate, but IT's, at the address registered for FR.
	impostor := startNode(t, ca, identity.Node(td, "IT"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 1000))})
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", impostor},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), &fakeNode{aggregate: answers("ES", 5, exact(arrests, 3))})},
	))
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	fr := r.GetMembers()[0]
	if fr.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK {
		t.Fatalf("FR: got ok from a server presenting node/IT")
	}
	if !strings.Contains(fr.GetReason(), "node/FR") {
		t.Errorf("FR reason: got %q, want it to name the expected identity", fr.GetReason())
	}
	if got, want := totalsOf(r), []string{"arrests=3"}; !slices.Equal(got, want) {
		t.Errorf("totals: got %v, want %v (the impostor not summed)", got, want)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_PARTIAL {
		t.Errorf("state: got %v, want PARTIAL", r.GetState())
	}
}

func TestRollupLeavesOutInvalidAnswers(t *testing.T) {
	t.Parallel()
	month := fedreportv1.Dimension_DIMENSION_MONTH
	tests := []struct {
		name    string
		groupBy []fedreportv1.Dimension
		resp    *fedreportv1.AggregateResponse
		reason  string
	}{
		{
			name:   "an answer signed by another member code",
			resp:   &fedreportv1.AggregateResponse{Member: "IT", MinCellCount: 5, Cells: []*fedreportv1.Cell{exact(arrests, 50)}},
			reason: `answered as member "IT"`,
		},
		{
			name:   "a cell of a metric that was not requested",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{exact(arrests, 50), exact(sites, 9)}},
			reason: "not requested",
		},
		{
			name:   "a dimension set that was not grouped by",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{withMonth(exact(arrests, 50), "2020-01")}},
			reason: "not grouped by",
		},
		{
			name:    "a month outside the requested range",
			groupBy: []fedreportv1.Dimension{month},
			resp:    &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{withMonth(exact(arrests, 50), "2021-01")}},
			reason:  "not a valid value",
		},
		{
			name:    "a month that does not exist",
			groupBy: []fedreportv1.Dimension{month},
			resp:    &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{withMonth(exact(arrests, 50), "2020-13")}},
			reason:  `month "2020-13", not a valid value`,
		},
		{
			name:    "a month not written YYYY-MM",
			groupBy: []fedreportv1.Dimension{month},
			resp:    &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{withMonth(exact(arrests, 50), "2020-2")}},
			reason:  `month "2020-2", not a valid value`,
		},
		{
			name:    "a month with a sign in it",
			groupBy: []fedreportv1.Dimension{month},
			resp:    &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{withMonth(exact(arrests, 50), "+020-02")}},
			reason:  "not a valid value",
		},
		{
			name:    "a grouped dimension left empty",
			groupBy: []fedreportv1.Dimension{month},
			resp:    &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{exact(arrests, 50)}},
			reason:  "not a valid value",
		},
		{
			name:   "the same cell twice",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{exact(arrests, 50), exact(arrests, 50)}},
			reason: "repeats",
		},
		{
			name:   "no cell for a requested metric without grouping",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5},
			reason: "no cell for requested metric arrests",
		},
		{
			name:   "a lower bound below the count",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{{Metric: arrests, Count: 50, LowerBound: 40, UpperBound: 50}}},
			reason: "bounds",
		},
		{
			name:   "an upper bound below the lower one",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{{Metric: arrests, SuppressedCells: 1, LowerBound: 1, UpperBound: 0}}},
			reason: "upper bound",
		},
		{
			name:   "a withheld cell whose known count is above its lower bound",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{{Metric: arrests, Count: 3, SuppressedCells: 1, LowerBound: 2, UpperBound: 9}}},
			reason: "above its lower bound",
		},
		{
			name:   "a pending cell whose bounds are upside down",
			resp:   &fedreportv1.AggregateResponse{Member: "SG", MinCellCount: 5, Cells: []*fedreportv1.Cell{{Metric: arrests, Count: 20, LowerBound: 22, UpperBound: 21, Pending: true}}},
			reason: "above the upper bound",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := testpki.New(t, td)
			sg := &fakeNode{aggregate: func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
				return tt.resp, nil
			}}
			frCell := exact(arrests, 10)
			if len(tt.groupBy) > 0 {
				frCell = withMonth(frCell, "2020-01")
			}
			c := newCoordinator(t, ca, testConfig(t, ca,
				Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, frCell)})},
				Member{"SG", startNode(t, ca, identity.Node(td, "SG"), sg)},
			))
			spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}, GroupBy: tt.groupBy}
			r, err := c.StartRollup(t.Context(), spec, requester)
			if err != nil {
				t.Fatal(err)
			}
			res := r.GetMembers()[1]
			if res.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_INVALID {
				t.Fatalf("SG: got %v (%s), want INVALID", res.GetStatus(), res.GetReason())
			}
			if !strings.Contains(res.GetReason(), tt.reason) {
				t.Errorf("SG reason: got %q, want it to contain %q", res.GetReason(), tt.reason)
			}
			if len(res.GetCells()) != 0 {
				t.Errorf("SG cells: got %v, want none", res.GetCells())
			}
			if len(r.GetTotals()) != 1 || r.GetTotals()[0].GetCount() != 10 {
				t.Errorf("totals: got %v, want only FR's 10", totalsOf(r))
			}
			if got, want := r.GetMissingMembers(), []string{"SG"}; !slices.Equal(got, want) {
				t.Errorf("missing: got %v, want %v", got, want)
			}
		})
	}
}

func TestRollupBelowQuorumFailsWithoutTotals(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", closedAddr(t)},
		Member{"ES", closedAddr(t)},
	)
	cfg.MinMembers = 2
	c := newCoordinator(t, ca, cfg)
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_FAILED; got != want {
		t.Errorf("state: got %v, want %v", got, want)
	}
	if len(r.GetTotals()) != 0 {
		t.Errorf("totals: got %v, want none", totalsOf(r))
	}
	if got := r.GetFailureReason(); !strings.Contains(got, "only 1 of 3") || !strings.Contains(got, "at least 2") || !strings.Contains(got, "IT (unreachable), ES (unreachable)") {
		t.Errorf("failure reason: got %q, want it to count who answered, give the quorum and name the missing", got)
	}
	if cells := r.GetMembers()[0].GetCells(); len(cells) != 0 {
		t.Errorf("FR cells: got %v, want none in a failed rollup", cells)
	}
	if got, want := r.GetMissingMembers(), []string{"IT", "ES"}; !slices.Equal(got, want) {
		t.Errorf("missing: got %v, want %v", got, want)
	}
}

func TestRollupWithNoMemberAnsweringFails(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"IT", closedAddr(t)}))
	r, err := c.StartRollup(t.Context(), wholeOperation, requester)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_FAILED || len(r.GetTotals()) != 0 {
		t.Errorf("got state %v with totals %v, want FAILED without totals", r.GetState(), totalsOf(r))
	}
}

func TestCloseInterruptsARunningRollup(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	entered := make(chan struct{})
	hung := &fakeNode{aggregate: func(ctx context.Context, _ *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), hung)})
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *fedreportv1.Rollup
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.StartRollup(context.Background(), wholeOperation, requester)
		done <- result{r, err}
	}()
	<-entered
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if got, want := res.r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED; got != want {
		t.Errorf("state: got %v, want %v", got, want)
	}
	if _, err := c.StartRollup(t.Context(), wholeOperation, requester); !errors.Is(err, ErrClosed) {
		t.Errorf("StartRollup after Close: got %v, want ErrClosed", err)
	}
	st, _, err := openStore(cfg.DataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	stored, err := st.get(res.r.GetId(), true)
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || stored.GetFailureReason() != reasonStopped {
		t.Errorf("stored: got %v %q, want INTERRUPTED %q", stored.GetState(), stored.GetFailureReason(), reasonStopped)
	}
}

func TestValidateSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		spec   *fedreportv1.RollupSpec
		fields []string
	}{
		{"a missing spec", nil, []string{"spec"}},
		{"dates not in YYYY-MM-DD", &fedreportv1.RollupSpec{From: "2020-1-1", To: "30/09/2020"}, []string{"spec.from", "spec.to"}},
		{"an impossible date", &fedreportv1.RollupSpec{From: "2020-02-30", To: "2020-03-01"}, []string{"spec.from"}},
		{"to before from", &fedreportv1.RollupSpec{From: "2020-09-30", To: "2020-01-01"}, []string{"spec.to"}},
		{"an unspecified metric", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", Metrics: []fedreportv1.Metric{arrests, 0}}, []string{"spec.metrics[1]"}},
		{"an unknown metric", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", Metrics: []fedreportv1.Metric{99}}, []string{"spec.metrics[0]"}},
		{"a metric twice", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", Metrics: []fedreportv1.Metric{arrests, sites, arrests}}, []string{"spec.metrics[2]"}},
		{"an unspecified dimension", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", GroupBy: []fedreportv1.Dimension{0}}, []string{"spec.group_by[0]"}},
		{"a dimension twice", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", GroupBy: []fedreportv1.Dimension{1, 2, 1}}, []string{"spec.group_by[2]"}},
		{"a valid one-day spec", &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-01", GroupBy: []fedreportv1.Dimension{1, 2, 3, 4, 5}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSpec(tt.spec)
			var got []string
			var verr *ValidationError
			if errors.As(err, &verr) {
				for _, v := range verr.Violations {
					got = append(got, v.Field)
				}
			} else if err != nil {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("fields: got %v, want %v (%v)", got, tt.fields, err)
			}
		})
	}

	// A date of the right form is not called malformed when the day does
	// not exist; the words are the nodes' own (records.ParseDate).
	for spec, want := range map[*fedreportv1.RollupSpec]string{
		{From: "2020-02-30", To: "2020-03-01"}: `"2020-02-30" does not exist (2020-02 has 29 days)`,
		{From: "2020-1-1", To: "2020-03-01"}:   `"2020-1-1" is not a date (want YYYY-MM-DD)`,
	} {
		var verr *ValidationError
		if err := ValidateSpec(spec); !errors.As(err, &verr) || verr.Violations[0].Description != want {
			t.Errorf("from %s: got %v, want spec.from: %s", spec.GetFrom(), err, want)
		}
	}
}

func TestStartRollupRefusesAnInvalidSpecBeforeStoringIt(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	_, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-09-30", To: "2020-01-01"}, requester)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	page, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetRollups()) != 0 {
		t.Errorf("stored rollups: got %d, want 0", len(page.GetRollups()))
	}
}

// benchMembers is how many members BenchmarkRollup asks: the federation
// size of the latency target.
const benchMembers = 200

// BenchmarkRollup runs rollups over benchMembers in-process members that
// answer at once, behind the interceptors and limits a node serves with
// (metrics, authorization, internal/grpcsrv), so that what it measures is
// the coordinator's fan-out and the per-call path both ends share. It
// reports the CPU time of the whole process per rollup (cpu-ms/op) besides
// the wall time: on a shared machine the CPU is the steadier figure.
//
//	go test ./coordinator -run '^$' -bench Rollup -benchtime 200x -count 5
func BenchmarkRollup(b *testing.B) {
	ca := testpki.New(b, td)
	reg := prometheus.NewRegistry()
	grpcMetrics, err := metrics.NewGRPC(reg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	unlimited := grpcsrv.Rate{PerSecond: 1e9, Burst: 1 << 30}
	limits := grpcsrv.Limits{Rates: map[string]grpcsrv.Rate{fedreportv1.AggregationService_Aggregate_FullMethodName: unlimited}}
	var members []Member
	for i := range benchMembers {
		code := fmt.Sprintf("M%03d", i+1)
		id := identity.Node(td, code)
		f := &benchNode{resp: &fedreportv1.AggregateResponse{Member: code, MinCellCount: 5, DataVersion: 7}}
		for _, m := range records.Metrics() {
			f.resp.Cells = append(f.resp.Cells, exact(m, uint64(i+int(m))))
		}
		rules := authz.Rules{
			fedreportv1.AggregationService_Aggregate_FullMethodName:    authz.Roles(identity.RoleCoordinator),
			fedreportv1.AggregationService_DescribeNode_FullMethodName: authz.Roles(identity.RoleCoordinator),
		}
		srv := grpc.NewServer(append([]grpc.ServerOption{
			grpc.Creds(credentials.NewTLS(ca.ServerTLS(b, id))),
			grpc.ChainUnaryInterceptor(grpcMetrics.UnaryServerInterceptor(), authz.UnaryServerInterceptor(rules)),
		}, grpcsrv.ServerOptions(limits)...)...)
		fedreportv1.RegisterAggregationServiceServer(srv, f)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(lis)
		}()
		b.Cleanup(func() {
			srv.Stop()
			<-done
		})
		members = append(members, Member{code, lis.Addr().String()})
	}
	me := identity.Coordinator(td, "main")
	c, err := Open(Config{
		DataPath: filepath.Join(b.TempDir(), "coord.db"),
		Members:  members,
		MemberTLS: func(code string) (*tls.Config, error) {
			return ca.ClientTLS(b, me, identity.Node(td, code)), nil
		},
		ServerTLS:   ca.ServerTLS(b, me),
		TrustDomain: td,
		Version:     "bench",
		Logger:      slog.New(slog.DiscardHandler),
		// The members do not limit the coordinator; its pace of them
		// stays in the call path without making the benchmark one of it.
		MemberRate: unlimited,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"}
	for range 3 { // connect to every member and learn its version
		if _, err := c.StartRollup(b.Context(), spec, requester); err != nil {
			b.Fatal(err)
		}
	}

	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		r, err := c.StartRollup(b.Context(), spec, requester)
		if err != nil {
			b.Fatal(err)
		}
		if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
			b.Fatalf("state %v: %s", r.GetState(), memberStatuses(r))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// benchNode answers every Aggregate with resp and describes itself.
type benchNode struct {
	fedreportv1.UnimplementedAggregationServiceServer
	resp *fedreportv1.AggregateResponse
}

func (n *benchNode) Aggregate(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	return n.resp, nil
}

func (n *benchNode) DescribeNode(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	return &fedreportv1.DescribeNodeResponse{Member: n.resp.GetMember(), SoftwareVersion: "bench"}, nil
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestRollupSumsAnswersLargerThanGRPCsDefaultWindow(t *testing.T) {
	t.Parallel()
	// 7,392 cells, about 370 KB: more than grpc's 64 KiB default flow-control
	// window, which the static windows of member connections and servers
	// (memberWindow, internal/grpcsrv) replace.
	spec := &fedreportv1.RollupSpec{From: "2010-01-01", To: "2020-12-31", Metrics: []fedreportv1.Metric{arrests},
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_CHANNEL}}
	var cells []*fedreportv1.Cell
	for month := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC); month.Year() <= 2020; month = month.AddDate(0, 1, 0) {
		for _, offence := range offenceNames {
			for _, channel := range channelNames {
				c := withMonth(exact(arrests, 7), month.Format("2006-01"))
				c.Offence, c.Channel = offence, channel
				cells = append(cells, c)
			}
		}
	}
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, cells...)}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(ca.ServerTLS(t, identity.Node(td, "FR"))))},
		grpcsrv.ServerOptions(grpcsrv.Limits{Rates: map[string]grpcsrv.Rate{}})...)...)
	fedreportv1.RegisterAggregationServiceServer(srv, fr)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", lis.Addr().String()}))

	r, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_COMPLETE; got != want {
		t.Fatalf("state: got %v, want %v (members %s)", got, want, memberStatuses(r))
	}
	if got, want := len(r.GetTotals()), len(cells); got != want {
		t.Errorf("totals: got %d cells, want %d", got, want)
	}
	if size := proto.Size(&fedreportv1.AggregateResponse{Cells: cells}); size < 256<<10 {
		t.Errorf("answer of %d bytes: want one well over the 64 KiB default window", size)
	}
}

func TestCallersKeepAtMostMaxGoroutinesAndStopOnClose(t *testing.T) {
	t.Parallel()
	p := newCallers(2)
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	for range 5 {
		started.Add(1)
		finished.Add(1)
		p.run(func() {
			defer finished.Done()
			started.Done()
			<-release
		})
	}
	started.Wait() // all five run at once: past max, calls get their own goroutine
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	if n != 2 {
		t.Errorf("callers: got %d, want the maximum, 2", n)
	}
	close(release)
	finished.Wait()

	ran := make(chan struct{})
	p.run(func() { close(ran) })
	<-ran
	p.close() // returns only once both callers have
	p.close()
	if p.n != 2 {
		t.Errorf("callers after reuse: got %d, want still 2", p.n)
	}
	ran = make(chan struct{})
	p.run(func() { close(ran) }) // after close a call still runs, on its own goroutine
	<-ran
}

// BenchmarkRollupGrouped measures what the coordinator does with answers
// once they have arrived, without the network: benchMembers members'
// answers by month and offence (9 months × 7 offence values × 5 metrics = 315
// cells each, as the bench's node gives), decoded from their wire bytes as
// gRPC does, checked, summed into totals, and encoded as the rollup is
// stored.
//
//	go test ./coordinator -run '^$' -bench RollupGrouped -count 5
func BenchmarkRollupGrouped(b *testing.B) {
	ca := testpki.New(b, td)
	me := identity.Coordinator(td, "main")
	var members []Member
	for i := range benchMembers {
		members = append(members, Member{fmt.Sprintf("M%03d", i+1), "127.0.0.1:1"})
	}
	c, err := Open(Config{
		DataPath:  filepath.Join(b.TempDir(), "coord.db"),
		Members:   members,
		MemberTLS: func(code string) (*tls.Config, error) { return ca.ClientTLS(b, me, identity.Node(td, code)), nil },
		ServerTLS: ca.ServerTLS(b, me), TrustDomain: td, Version: "bench", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30",
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}}
	req := memberRequest(spec, "01JDX0000000000000000000000", nil)
	wire := make([][]byte, benchMembers)
	for i, m := range members {
		resp := &fedreportv1.AggregateResponse{Member: m.Code, MinCellCount: 5, DataVersion: 7}
		for _, metric := range records.Metrics() {
			for month := 1; month <= 9; month++ {
				for o, offence := range offenceNames {
					n := uint64((i*7 + month*3 + o + int(metric)) % 40)
					cell := exact(metric, n)
					if n > 0 && n < 5 {
						cell = suppressed(metric, 5)
					}
					cell.Month, cell.Offence = fmt.Sprintf("2020-%02d", month), offence
					resp.Cells = append(resp.Cells, cell)
				}
			}
		}
		if wire[i], err = proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
	var size int
	for b.Loop() {
		check := newAnswerCheck(req)
		outcomes := make([]outcome, benchMembers)
		for i, m := range members {
			resp := &fedreportv1.AggregateResponse{}
			if err := proto.Unmarshal(wire[i], resp); err != nil {
				b.Fatal(err)
			}
			ids, err := check.answer(m.Code, resp)
			if err != nil {
				b.Fatal(err)
			}
			outcomes[i] = outcome{result: &fedreportv1.MemberResult{Member: m.Code, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK}, answer: resp, ids: ids}
		}
		r := &fedreportv1.Rollup{Id: req.GetRollupId(), Spec: spec}
		c.finishRollup(r, c.registry(), outcomes, false)
		if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || len(r.GetTotals()) != 315 {
			b.Fatalf("state %v, %d totals", r.GetState(), len(r.GetTotals()))
		}
		stored, err := marshalRollup(r)
		if err != nil {
			b.Fatal(err)
		}
		size = len(stored)
	}
	b.ReportMetric(float64(size), "stored-bytes")
}

// FuzzAnswerCheck feeds the answer check what a member could send: it
// never panics, and an answer it accepts has one distinct id per cell that
// names the cell's own values.
func FuzzAnswerCheck(f *testing.F) {
	seed := &fedreportv1.AggregateResponse{Member: "FR", MinCellCount: 5, Cells: []*fedreportv1.Cell{
		{Metric: arrests, Month: "2020-03", Offence: offenceNames[1], Channel: channelNames[2], VictimAge: victimAgeNames[0], Count: 7, LowerBound: 7, UpperBound: 7},
		{Metric: victims, Month: "2020-01", Offence: offenceNames[0], Channel: channelNames[0], VictimAge: victimAgeNames[1], SuppressedCells: 1, LowerBound: 1, UpperBound: 4},
		{Metric: victims, Month: "2020-02", Offence: offenceNames[0], Channel: channelNames[0], VictimAge: victimAgeNames[1], SuppressedCells: 1, LowerBound: 0, UpperBound: 9},
		{Metric: victims, Month: "2020-03", Offence: offenceNames[0], Channel: channelNames[0], VictimAge: victimAgeNames[1], Count: 30, LowerBound: 27, UpperBound: 29, Pending: true},
	}}
	b, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	req := memberRequest(&fedreportv1.RollupSpec{From: "2019-12-15", To: "2020-06-30", GroupBy: []fedreportv1.Dimension{
		fedreportv1.Dimension_DIMENSION_VICTIM_AGE, fedreportv1.Dimension_DIMENSION_MONTH,
		fedreportv1.Dimension_DIMENSION_CHANNEL, fedreportv1.Dimension_DIMENSION_OFFENCE}}, "r", nil)
	check := newAnswerCheck(req)
	if _, err := check.answer("FR", seed); err != nil {
		f.Fatalf("the seed must pass, so that the properties below are reached: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := &fedreportv1.AggregateResponse{}
		if proto.Unmarshal(b, resp) != nil {
			return
		}
		ids, err := check.answer("FR", resp)
		if err != nil {
			return
		}
		if len(ids) != len(resp.GetCells()) {
			t.Fatalf("%d ids for %d cells", len(ids), len(resp.GetCells()))
		}
		seen := map[cellID]bool{}
		for i, c := range resp.GetCells() {
			id := ids[i]
			if seen[id] {
				t.Fatalf("cell %d: id %+v twice", i, id)
			}
			seen[id] = true
			month := fmt.Sprintf("%04d-%02d", id.month/12, id.month%12+1)
			if id.metric != c.GetMetric() || month != c.GetMonth() || offenceNames[id.offence] != c.GetOffence() ||
				channelNames[id.channel] != c.GetChannel() || victimAgeNames[id.ageBand] != c.GetVictimAge() || id.member != 0 {
				t.Fatalf("cell %d %v has id %+v", i, c, id)
			}
			if month < "2019-12" || month > "2020-06" {
				t.Fatalf("cell %d: month %s accepted outside the request", i, month)
			}
			n, lo, hi := c.GetCount(), c.GetLowerBound(), c.GetUpperBound()
			switch {
			case lo > hi:
				t.Fatalf("cell %d: bounds [%d, %d] accepted upside down", i, lo, hi)
			case c.GetPending():
			case c.GetSuppressedCells() == 0 && (n != lo || n != hi):
				t.Fatalf("cell %d: exact count %d accepted with bounds [%d, %d]", i, n, lo, hi)
			case c.GetSuppressedCells() > 0 && n > lo:
				t.Fatalf("cell %d: withheld cell's count %d accepted above its lower bound %d", i, n, lo)
			}
		}
	})
}
