package coordinator

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var arrestsSpec = &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}

// unavailableThen answers UNAVAILABLE to the first n calls and then calls next.
func unavailableThen(n int32, next func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error)) func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	var calls atomic.Int32
	return func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		if calls.Add(1) <= n {
			return nil, status.Error(codes.Unavailable, "node restarting")
		}
		return next(ctx, req)
	}
}

func hang(ctx context.Context, _ *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRollupRetriesUnavailableOnceWithinTheMemberDeadline(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	tests := []struct {
		name      string
		aggregate func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error)
		status    fedreportv1.MemberStatus
		reason    string
		calls     int
	}{
		{"a member unavailable once is asked again and counted", unavailableThen(1, answers("FR", 5, exact(arrests, 10))), fedreportv1.MemberStatus_MEMBER_STATUS_OK, "", 2},
		{"a member unavailable twice is unreachable after one retry", unavailableThen(2, answers("FR", 5, exact(arrests, 10))), fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, "after one retry", 2},
		{"a retry that hangs times out at the first deadline", unavailableThen(1, hang), fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, "member timeout", 2},
		{"a refusal is not retried", func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
			return nil, status.Error(codes.PermissionDenied, "no")
		}, fedreportv1.MemberStatus_MEMBER_STATUS_REFUSED, "PERMISSION_DENIED", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := testpki.New(t, td)
			fr := &fakeNode{aggregate: tt.aggregate}
			cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
			cfg.MemberTimeout = timeout
			c := newCoordinator(t, ca, cfg)
			start := time.Now()
			r, err := c.StartRollup(t.Context(), arrestsSpec, requester)
			if err != nil {
				t.Fatal(err)
			}
			// A retry that got a fresh deadline would take twice the timeout.
			if elapsed := time.Since(start); elapsed > 2*timeout-timeout/10 {
				t.Errorf("rollup took %v, want at most about the member timeout %v", elapsed, timeout)
			}
			res := r.GetMembers()[0]
			if res.GetStatus() != tt.status || !strings.Contains(res.GetReason(), tt.reason) {
				t.Errorf("FR: got %v %q, want %v with %q", res.GetStatus(), res.GetReason(), tt.status, tt.reason)
			}
			if got := len(fr.requests()); got != tt.calls {
				t.Errorf("Aggregate calls: got %d, want %d", got, tt.calls)
			}
		})
	}
}

func TestRollupRequiringEveryMemberFailsWhenOneIsMissing(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})
	it := startNode(t, ca, identity.Node(td, "IT"), &fakeNode{aggregate: answers("IT", 5, exact(arrests, 5))})

	cfg := testConfig(t, ca, Member{"FR", fr}, Member{"IT", it}, Member{"ES", closedAddr(t)})
	cfg.RequireAll = true
	c := newCoordinator(t, ca, cfg)
	r, err := c.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GetState(), fedreportv1.RollupState_ROLLUP_STATE_FAILED; got != want {
		t.Errorf("state: got %v, want %v", got, want)
	}
	if got := r.GetFailureReason(); !strings.Contains(got, "only 2 of 3") || !strings.Contains(got, "require_all") || !strings.Contains(got, "ES (unreachable)") {
		t.Errorf("failure reason: got %q, want it to count, name the rule and the missing member", got)
	}
	if len(r.GetTotals()) != 0 {
		t.Errorf("totals: got %v, want none", totalsOf(r))
	}
	for _, m := range r.GetMembers() {
		if len(m.GetCells()) != 0 {
			t.Errorf("%s cells: got %v, want none in a failed rollup (they would add up to the partial sum)", m.GetMember(), m.GetCells())
		}
	}
	if got, want := memberStatuses(r), "FR=ok IT=ok ES=unreachable"; got != want {
		t.Errorf("members: got %q, want %q", got, want)
	}

	cfg = testConfig(t, ca, Member{"FR", fr}, Member{"IT", it})
	cfg.RequireAll = true
	all := newCoordinator(t, ca, cfg)
	r, err = all.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || !slices.Equal(totalsOf(r), []string{"arrests=15"}) {
		t.Errorf("every member answering: got %v %v, want COMPLETE arrests=15", r.GetState(), totalsOf(r))
	}
}

func TestRerunReportsWhichMembersDataChanged(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	var itVersion atomic.Uint64
	itVersion.Store(40)
	it := &fakeNode{aggregate: func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		// Every answer sees one more committed write.
		return &fedreportv1.AggregateResponse{Member: "IT", MinCellCount: 5, DataVersion: itVersion.Add(1), Cells: []*fedreportv1.Cell{exact(arrests, 5)}}, nil
	}}
	var esDown atomic.Bool
	es := &fakeNode{aggregate: func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		if esDown.Load() {
			return nil, status.Error(codes.FailedPrecondition, "maintenance")
		}
		return answers("ES", 5, exact(arrests, 1))(ctx, req)
	}}
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), es)},
	))
	orig, err := c.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	esDown.Store(true)
	const rerunner = "spiffe://isa/operator/bob"
	again, changes, err := c.Rerun(t.Context(), orig.GetId(), rerunner)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() == orig.GetId() || again.GetRequestedBy() != rerunner {
		t.Errorf("rerun: got id %s requested by %q, want a new rollup by %q", again.GetId(), again.GetRequestedBy(), rerunner)
	}
	var got []string
	for _, ch := range changes {
		got = append(got, ch.String())
	}
	want := []string{"FR 7 unchanged", "IT 41 -> 42 changed", "ES unknown (before: ok 7, after: refused)"}
	if !slices.Equal(got, want) {
		t.Errorf("changes: got %q, want %q", got, want)
	}
	if !changes[1].Changed() || changes[0].Changed() || changes[2].Known() {
		t.Errorf("Changed/Known: got %+v", changes)
	}
	stored, err := c.GetRollup(t.Context(), orig.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetMembers()[1].GetDataVersion() != 41 || stored.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Errorf("original after a rerun: got %v, want it unchanged", stored)
	}
	if _, _, err := c.Rerun(t.Context(), "r00000099", rerunner); !errors.Is(err, ErrRollupNotFound) {
		t.Errorf("rerun of an unknown id: got %v, want ErrRollupNotFound", err)
	}
}

func TestCompareDataVersionsListsMembersOfEitherRun(t *testing.T) {
	t.Parallel()
	ok := fedreportv1.MemberStatus_MEMBER_STATUS_OK
	before := &fedreportv1.Rollup{Members: []*fedreportv1.MemberResult{
		{Member: "FR", Status: ok, DataVersion: 3},
		{Member: "GB", Status: ok, DataVersion: 9},
	}}
	after := &fedreportv1.Rollup{Members: []*fedreportv1.MemberResult{
		{Member: "FR", Status: ok, DataVersion: 2},
		{Member: "AU", Status: ok, DataVersion: 1},
	}}
	var got []string
	for _, ch := range CompareDataVersions(before, after) {
		got = append(got, ch.String())
	}
	want := []string{"FR 3 -> 2 changed", "AU unknown (before: not registered, after: ok 1)", "GB unknown (before: ok 9, after: not registered)"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// serveUntil serves c on 127.0.0.1:0 until stop is called; stop returns
// Serve's error. Cleanup stops it if the test did not.
func serveUntil(t *testing.T, c *testCoordinator) (addr string, stop func() error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, lis) }()
	var result error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-served
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return lis.Addr().String(), stop
}

type rollupResult struct {
	r   *fedreportv1.Rollup
	err error
}

// startRollupRPC starts a rollup through the operator's client in the background.
func startRollupRPC(t *testing.T, c *testCoordinator, addr string) <-chan rollupResult {
	t.Helper()
	client := fedreportv1.NewCoordinatorServiceClient(dial(t, c.ca, addr, identity.Operator(td, "alice")))
	out := make(chan rollupResult, 1)
	go func() {
		resp, err := client.StartRollup(context.Background(), &fedreportv1.StartRollupRequest{Spec: arrestsSpec})
		out <- rollupResult{resp.GetRollup(), err}
	}()
	return out
}

func TestServeStoppingInterruptsRollupsPastTheShutdownDeadline(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	entered := make(chan struct{})
	fr := &fakeNode{aggregate: func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		close(entered)
		return hang(ctx, req)
	}}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	cfg.MemberTimeout = time.Minute // the rollup would not end by itself
	cfg.ShutdownTimeout = 100 * time.Millisecond
	c := newCoordinator(t, ca, cfg)
	addr, stop := serveUntil(t, c)

	pending := startRollupRPC(t, c, addr)
	<-entered
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("stopping took %v, want about the shutdown timeout", elapsed)
	}
	res := <-pending
	if res.err != nil {
		t.Fatalf("StartRollup: got %v, want the interrupted rollup", res.err)
	}
	if res.r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || res.r.GetFailureReason() != "coordinator stopping" {
		t.Errorf("returned rollup: got %v %q, want INTERRUPTED \"coordinator stopping\"", res.r.GetState(), res.r.GetFailureReason())
	}
	stored, err := c.GetRollup(t.Context(), res.r.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || stored.GetFinishedAt() == nil {
		t.Errorf("stored rollup: got %v finished %v, want INTERRUPTED with an end", stored.GetState(), stored.GetFinishedAt())
	}
	if _, err := c.StartRollup(t.Context(), arrestsSpec, requester); !errors.Is(err, ErrClosed) {
		t.Errorf("StartRollup after Serve stopped: got %v, want ErrClosed", err)
	}
}

func TestServeStoppingLetsRunningRollupsFinish(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	entered, release := make(chan struct{}), make(chan struct{})
	fr := &fakeNode{aggregate: func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		close(entered)
		<-release
		return answers("FR", 5, exact(arrests, 10))(ctx, req)
	}}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	cfg.ShutdownTimeout = time.Minute
	c := newCoordinator(t, ca, cfg)
	addr, stop := serveUntil(t, c)

	// Watch health to learn when the shutdown has begun.
	wctx, wcancel := context.WithCancel(t.Context())
	defer wcancel()
	watch, err := healthpb.NewHealthClient(dial(t, ca, addr, identity.Analyst(td, "bob"))).Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hr, err := watch.Recv(); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %v, %v; want SERVING", hr, err)
	}

	pending := startRollupRPC(t, c, addr)
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	if hr, err := watch.Recv(); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while stopping: got %v, %v; want NOT_SERVING", hr, err)
	}
	wcancel()
	close(release)

	if err := <-stopped; err != nil {
		t.Fatalf("serve: %v", err)
	}
	res := <-pending
	if res.err != nil {
		t.Fatalf("StartRollup: got %v, want the finished rollup", res.err)
	}
	if res.r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || !slices.Equal(totalsOf(res.r), []string{"arrests=10"}) {
		t.Errorf("rollup finished during shutdown: got %v %v, want COMPLETE arrests=10", res.r.GetState(), totalsOf(res.r))
	}
}
