package coordinator

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// phases are the operation's two phases, as a node's policy advertises them.
var phases = []*fedreportv1.Period{
	{Name: "phase-1", From: "2020-01-01", To: "2020-05-30"},
	{Name: "phase-2", From: "2020-06-01", To: "2020-09-30"},
}

// table is a published table of the given dimensions.
func table(dims ...fedreportv1.Dimension) *fedreportv1.Table {
	return &fedreportv1.Table{Dimensions: dims}
}

// releaseNode is a fake node of kind that advertises a release with the
// given periods and tables (policy is read at every DescribeNode, so a test
// may change it) and answers every Aggregate with one exact cell.
func releaseNode(code, kind string, policy *atomic.Pointer[fedreportv1.Policy]) *fakeNode {
	return &fakeNode{
		aggregate: func(_ context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
			resp := &fedreportv1.AggregateResponse{Member: code, MinCellCount: 5, DataVersion: 1, ReleaseVersion: 1}
			if len(req.GetGroupBy()) == 0 {
				resp.Cells = []*fedreportv1.Cell{exact(arrests, 10)}
			}
			return resp, nil
		},
		describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: code, Kind: kind, SoftwareVersion: "node-test", Policy: policy.Load()}, nil
		},
	}
}

func policyOf(p *fedreportv1.Policy) *atomic.Pointer[fedreportv1.Policy] {
	var a atomic.Pointer[fedreportv1.Policy]
	a.Store(p)
	return &a
}

func TestRollupRefusedBeforeAskingAnyMemberWhenAReleaseCannotAnswerIt(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	// FR publishes the phases and two margins. IT advertises no tables (a
	// node from before the protected release) and EU is a regional
	// coordinator: neither is pre-checked, so neither can refuse here.
	fr := releaseNode("FR", "node", policyOf(&fedreportv1.Policy{MinCellCount: 5, Periods: phases, Tables: []*fedreportv1.Table{table(offence), table(channel)}}))
	it := releaseNode("IT", "node", policyOf(&fedreportv1.Policy{MinCellCount: 5}))
	eu := releaseNode("EU", KindCoordinator, policyOf(&fedreportv1.Policy{MinCellCount: 5, Tables: []*fedreportv1.Table{table(channel)}}))
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)},
		Member{"EU", startNode(t, ca, identity.Node(td, "EU"), eu)},
	))
	op := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, serve(t, c), identity.Operator(td, "alice")))

	member := fedreportv1.Dimension_DIMENSION_MEMBER
	tests := []struct {
		name     string
		from, to string
		groupBy  []fedreportv1.Dimension
		reason   string   // "" when the rollup runs
		says     []string // in the refusal's message
	}{
		{name: "a phase is a release period", from: "2020-01-01", to: "2020-05-30"},
		{name: "whole months by member and offence are a published table", from: "2020-03-01", to: "2020-04-30", groupBy: []fedreportv1.Dimension{member, offence}},
		{name: "whole months by month", from: "2020-01-01", to: "2020-05-31", groupBy: []fedreportv1.Dimension{month, channel}},
		{
			name: "a month a day short", from: "2020-03-01", to: "2020-03-30", reason: ReasonPeriodNotAligned,
			says: []string{"member FR cannot answer", "window 2020-03-01..2020-03-30", "phase-1 (2020-01-01..2020-05-30)", "nearest allowed: 2020-03-01..2020-03-31"},
		},
		{
			name: "a phase by month leaves 1-30 May", from: "2020-01-01", to: "2020-05-30", groupBy: []fedreportv1.Dimension{month}, reason: ReasonPeriodNotAligned,
			says: []string{"member FR cannot answer", "within each month", "2020-01-01..2020-05-31 or 2020-01-01..2020-04-30"},
		},
		{
			name: "a cross the member does not publish", from: "2020-01-01", to: "2020-09-30", groupBy: []fedreportv1.Dimension{offence, channel}, reason: ReasonTableNotPublished,
			says: []string{"member FR cannot answer", "no table by offence,channel", "its tables: offence; channel, and the total"},
		},
		{
			name: "a margin the member does not publish", from: "2020-06-01", to: "2020-09-30", groupBy: []fedreportv1.Dimension{member, fedreportv1.Dimension_DIMENSION_VICTIM_AGE}, reason: ReasonTableNotPublished,
			says: []string{"member FR cannot answer", "no table by victim_age"},
		},
	}
	for _, tt := range tests {
		asked := len(fr.requests()) + len(it.requests()) + len(eu.requests())
		before, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		spec := &fedreportv1.RollupSpec{From: tt.from, To: tt.to, Metrics: []fedreportv1.Metric{arrests}, GroupBy: tt.groupBy}
		resp, err := op.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: spec})
		if tt.reason == "" {
			if err != nil {
				t.Errorf("%s: got %v, want the rollup to run", tt.name, err)
			} else if got := resp.GetRollup().GetState(); got != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
				t.Errorf("%s: got %v (%s), want COMPLETE", tt.name, got, memberStatuses(resp.GetRollup()))
			}
			continue
		}
		if status.Code(err) != codes.FailedPrecondition || reasonOf(err) != tt.reason {
			t.Errorf("%s: got %v (reason %q), want FAILED_PRECONDITION %s", tt.name, err, reasonOf(err), tt.reason)
			continue
		}
		msg := status.Convert(err).Message()
		for _, s := range tt.says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s: refusal %q does not say %q", tt.name, msg, s)
			}
		}
		for _, d := range status.Convert(err).Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetMetadata()["members"] != "FR" {
				t.Errorf("%s: ErrorInfo members %q, want FR alone", tt.name, ei.GetMetadata()["members"])
			}
		}
		if now := len(fr.requests()) + len(it.requests()) + len(eu.requests()); now != asked {
			t.Errorf("%s: %d Aggregate requests sent, want none", tt.name, now-asked)
		}
		after, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(after.GetRollups()) != len(before.GetRollups()) {
			t.Errorf("%s: a refused rollup was stored", tt.name)
		}
	}
}

func TestRollupRefusalAsksTheMembersAgainBeforeItStands(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	policy := policyOf(&fedreportv1.Policy{MinCellCount: 5, Tables: []*fedreportv1.Table{table(offence)}})
	fr := releaseNode("FR", "node", policy)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)}))
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30", Metrics: []fedreportv1.Metric{arrests}}

	var refused *RefusedError
	if _, err := c.StartRollup(t.Context(), spec, requester); !asRefused(err, &refused) || refused.Reason != ReasonPeriodNotAligned {
		t.Fatalf("before the phases: got %v, want a PERIOD_NOT_ALIGNED refusal", err)
	}
	// The ministry publishes the phases: the coordinator's last knowledge
	// of FR says no, but FR is asked again before the refusal stands.
	policy.Store(&fedreportv1.Policy{MinCellCount: 5, Periods: phases, Tables: []*fedreportv1.Table{table(offence)}})
	r, err := c.StartRollup(t.Context(), spec, requester)
	if err != nil || r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("after the phases: got %v, %v; want a COMPLETE rollup", r.GetState(), err)
	}
	if got := len(fr.requests()); got != 1 {
		t.Errorf("FR was sent %d Aggregate requests, want 1 (the refused rollup none)", got)
	}
}

func asRefused(err error, target **RefusedError) bool {
	r, ok := err.(*RefusedError)
	*target = r
	return ok
}

// TestAMemberThatDoesNotDescribeItselfIsAskedAnyway has FR hang on
// DescribeNode: the pre-check gives up on it (within a quarter of the member
// timeout), so FR is not pre-checked, not even for a window no release
// would tile, and its answer is summed.
func TestAMemberThatDoesNotDescribeItselfIsAskedAnyway(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{
		aggregate: answers("FR", 5, exact(arrests, 10)),
		describe: func(ctx context.Context, _ *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	cfg.MemberTimeout = 2 * time.Second
	c := newCoordinator(t, ca, cfg)
	r, err := c.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-03-02", To: "2020-03-30", Metrics: []fedreportv1.Metric{arrests}}, requester)
	if err != nil || r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("got %v, %v; want a COMPLETE rollup", r.GetState(), err)
	}
	if got := r.GetTotals()[0].GetCount(); got != 10 {
		t.Errorf("total: got %d, want FR's 10", got)
	}
}

// TestRegionalCoordinatorRefusesWhatItsMembersReleasesCannotAnswer asks a
// regional coordinator, as its parent does, for a window its member FR's
// release does not tile: it refuses as a node would (FAILED_PRECONDITION,
// PERIOD_NOT_ALIGNED, the request's own field names) and asks no member.
func TestRegionalCoordinatorRefusesWhatItsMembersReleasesCannotAnswer(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := releaseNode("FR", "node", policyOf(&fedreportv1.Policy{MinCellCount: 5, Periods: phases, Tables: []*fedreportv1.Table{table(offence)}}))
	_, addr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	_, err := asTop(t, ca, addr).Aggregate(t.Context(), &fedreportv1.AggregateRequest{
		From: "2020-03-01", To: "2020-03-30", Metrics: []fedreportv1.Metric{arrests}, RollupId: "r00000001", RollupStartedAt: rollupStarted})
	reason, fields := refusal(err)
	if status.Code(err) != codes.FailedPrecondition || reason != ReasonPeriodNotAligned || !slices.Equal(fields, []string{"from", "to"}) {
		t.Errorf("got %v (reason %q, fields %v), want FAILED_PRECONDITION %s on from and to", err, reason, fields, ReasonPeriodNotAligned)
	}
	if !strings.Contains(status.Convert(err).Message(), "member FR cannot answer") {
		t.Errorf("refusal %q does not name FR", status.Convert(err).Message())
	}
	if got := len(fr.requests()); got != 0 {
		t.Errorf("FR was sent %d Aggregate requests, want none", got)
	}
}
