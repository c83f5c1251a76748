package coordinator

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// startLimitedNode serves f as member code over mTLS behind the limits a
// node serves with (internal/grpcsrv): with grpcsrv.Limits{}, a node's
// default Aggregate rate per caller identity. It returns the address.
func startLimitedNode(t *testing.T, ca *testpki.CA, code string, f *fakeNode, limits grpcsrv.Limits) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(ca.ServerTLS(t, identity.Node(td, code))))},
		grpcsrv.ServerOptions(limits)...)...)
	fedreportv1.RegisterAggregationServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

var januaryArrests = &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{arrests}}

// TestFiveOperatorsRollupsAllComplete has seven operators start ten
// rollups each at once, over the coordinator's mTLS API, against two members
// that limit each caller identity as a node does by default (5 Aggregate
// calls a second, bursts of 60). All 70 rollups ask each member as the one
// coordinator identity, 10 more than the burst: the coordinator paces them,
// and every rollup completes, every member having answered each one once.
func TestFiveOperatorsRollupsAllComplete(t *testing.T) {
	t.Parallel()
	const operators, rollupsEach = 7, 10 // 70 calls to each member: 10 past its burst of 60
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, exact(arrests, 500))}
	it := &fakeNode{aggregate: answers("IT", 5, exact(arrests, 271))}
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startLimitedNode(t, ca, "FR", fr, grpcsrv.Limits{})},
		Member{"IT", startLimitedNode(t, ca, "IT", it, grpcsrv.Limits{})},
	))
	addr := serve(t, c)

	type result struct {
		who string
		r   *fedreportv1.Rollup
		err error
	}
	results := make(chan result, operators*rollupsEach)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range operators {
		who := fmt.Sprintf("op%d", i+1)
		client := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, who)))
		for range rollupsEach {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				resp, err := client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: januaryArrests})
				results <- result{who, resp.GetRollup(), err}
			})
		}
	}
	wg.Wait()
	close(results)
	t.Logf("%d rollups of %d operators in %v", operators*rollupsEach, operators, time.Since(start).Round(time.Millisecond))

	complete := 0
	for res := range results {
		switch {
		case res.err != nil:
			t.Errorf("%s's rollup: %v", res.who, res.err)
		case res.r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE:
			t.Errorf("%s's rollup %s: got %v (%s), want complete", res.who, res.r.GetId(), res.r.GetState(), memberReasons(res.r))
		default:
			complete++
		}
	}
	if complete != operators*rollupsEach {
		t.Errorf("complete rollups: got %d of %d", complete, operators*rollupsEach)
	}
	for _, n := range []struct {
		code string
		f    *fakeNode
	}{{"FR", fr}, {"IT", it}} {
		if got := len(n.f.requests()); got != operators*rollupsEach {
			t.Errorf("%s answered %d Aggregate calls, want %d (one per rollup)", n.code, got, operators*rollupsEach)
		}
	}
}

// memberReasons returns "FR=refused: ..., IT=ok" for a rollup.
func memberReasons(r *fedreportv1.Rollup) string {
	var parts []string
	for _, m := range r.GetMembers() {
		s := m.GetMember() + "=" + memberStatusName(m.GetStatus())
		if m.GetReason() != "" {
			s += ": " + m.GetReason()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// startAll starts n rollups of spec at once and returns them.
func startAll(t *testing.T, c *testCoordinator, spec *fedreportv1.RollupSpec, n int) []*fedreportv1.Rollup {
	t.Helper()
	out := make([]*fedreportv1.Rollup, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = c.StartRollup(t.Context(), spec, requester) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rollup %d: %v", i+1, err)
		}
	}
	return out
}

// TestAMemberThatGrantsLessIsAskedAgainWhenItSays limits the coordinator,
// at the member, to bursts of 1 at 5 calls a second, far below the pace the
// coordinator keeps by default. Five rollups at once: the member refuses
// four RESOURCE_EXHAUSTED with a RetryInfo, the coordinator asks again after
// each delay, and all five complete.
func TestAMemberThatGrantsLessIsAskedAgainWhenItSays(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, exact(arrests, 500))}
	strict := grpcsrv.Limits{Rates: map[string]grpcsrv.Rate{fedreportv1.AggregationService_Aggregate_FullMethodName: {PerSecond: 5, Burst: 1}}}
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", startLimitedNode(t, ca, "FR", fr, strict)}))

	for i, r := range startAll(t, c, januaryArrests, 5) {
		if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
			t.Errorf("rollup %d: got %v (%s), want complete", i+1, r.GetState(), memberReasons(r))
		}
	}
	if got := len(fr.requests()); got != 5 {
		t.Errorf("FR answered %d Aggregate calls, want 5", got)
	}
}

// TestARetryThatWouldOutlastTheMemberTimeoutIsNotWaitedFor has a member
// that grants one call every 100 seconds: the second rollup's member is
// refused at once with the member's own words, rather than waited for
// until the member timeout.
func TestARetryThatWouldOutlastTheMemberTimeoutIsNotWaitedFor(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, exact(arrests, 500))}
	slow := grpcsrv.Limits{Rates: map[string]grpcsrv.Rate{fedreportv1.AggregationService_Aggregate_FullMethodName: {PerSecond: 0.01, Burst: 1}}}
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", startLimitedNode(t, ca, "FR", fr, slow)}))

	if r, err := c.StartRollup(t.Context(), januaryArrests, requester); err != nil || r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("first rollup: got %v (%s), %v; want complete", r.GetState(), memberReasons(r), err)
	}
	r, err := c.StartRollup(t.Context(), januaryArrests, requester)
	if err != nil {
		t.Fatal(err)
	}
	m := r.GetMembers()[0]
	if m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_REFUSED || !strings.Contains(m.GetReason(), "RESOURCE_EXHAUSTED: rate limit") {
		t.Errorf("second rollup: FR %v %q, want refused, quoting the member's rate limit", m.GetStatus(), m.GetReason())
	}
}

// TestACallWhoseTurnComesTooLateIsNotMade paces the coordinator at one call
// every 5 seconds with a member timeout of 2 seconds: of two rollups at
// once, one asks the member and completes; the other's turn would come
// after its deadline, so it does not ask, and says so as a timeout.
func TestACallWhoseTurnComesTooLateIsNotMade(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, exact(arrests, 500))}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	cfg.MemberTimeout = 2 * time.Second
	cfg.MemberRate = grpcsrv.Rate{PerSecond: 0.2, Burst: 1}
	c := newCoordinator(t, ca, cfg)

	states := map[fedreportv1.MemberStatus]int{}
	for _, r := range startAll(t, c, januaryArrests, 2) {
		m := r.GetMembers()[0]
		states[m.GetStatus()]++
		if m.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT && !strings.Contains(m.GetReason(), "not asked: the calls to this member queued ahead") {
			t.Errorf("the rollup not asked: reason %q, want one that says it was not asked and why", m.GetReason())
		}
	}
	if states[fedreportv1.MemberStatus_MEMBER_STATUS_OK] != 1 || states[fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT] != 1 {
		t.Errorf("member statuses: got %v, want one ok and one timeout", states)
	}
	if got := len(fr.requests()); got != 1 {
		t.Errorf("FR received %d Aggregate calls, want 1", got)
	}
}
