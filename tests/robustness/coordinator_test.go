package robustness

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// federation is a CA with the certificates a coordinator test needs.
type federation struct {
	dir, ca string
}

func (f federation) files(id identity.ID) (cert, key string) {
	base := filepath.Join(f.dir, pki.FileBase(id))
	return base + ".crt", base + ".key"
}

func newFederation(t *testing.T, ids ...identity.ID) federation {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, _, err := ca.IssueToDir(dir, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	return federation{dir: dir, ca: filepath.Join(dir, pki.CACertFile)}
}

func (f federation) source(t *testing.T, id identity.ID) mtls.Source {
	t.Helper()
	cert, key := f.files(id)
	src, err := mtls.NewFiles(f.ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// gateMember is a member node that answers Aggregate only once its gate is
// open; until then it holds every call, as a hung node does.
type gateMember struct {
	fedreportv1.UnimplementedAggregationServiceServer
	asked chan struct{} // receives once per Aggregate call
	open  chan struct{} // closed: answer
}

func (g *gateMember) Aggregate(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	select {
	case g.asked <- struct{}{}:
	default:
	}
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	resp := &fedreportv1.AggregateResponse{Member: "FR", MinCellCount: 5, DataVersion: 1}
	for _, m := range req.GetMetrics() {
		resp.Cells = append(resp.Cells, &fedreportv1.Cell{Metric: m, Count: 12, LowerBound: 12, UpperBound: 12})
	}
	return resp, nil
}

func (g *gateMember) DescribeNode(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	return &fedreportv1.DescribeNodeResponse{Member: "FR", Kind: "node", Policy: &fedreportv1.Policy{MinCellCount: 5}}, nil
}

func serveMember(t *testing.T, src mtls.Source, m fedreportv1.AggregationServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(src))))
	fedreportv1.RegisterAggregationServiceServer(srv, m)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

var servingRE = regexp.MustCompile(`msg="coordinator serving" addr=(\S+)`)

func startCoordinator(t *testing.T, f federation, db, member string, extra ...string) (*proc, fedreportv1.CoordinatorServiceClient) {
	t.Helper()
	cert, key := f.files(identity.Coordinator("isa", "main"))
	args := append([]string{"coordinator", "--data", db, "--listen", "127.0.0.1:0", "--member", "FR=" + member,
		"--cacert", f.ca, "--cert", cert, "--key", key}, extra...)
	p := start(t, args...)
	addr := p.waitLog(t, servingRE, 30*time.Second)
	cfg := mtls.ClientConfig(f.source(t, identity.Operator("isa", "op")), mtls.ExpectRole("isa", identity.RoleCoordinator))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return p, fedreportv1.NewCoordinatorServiceClient(conn)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var wholeOperation = &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}

// startHeldRollup starts a rollup whose member holds it, and returns once
// the member was asked (the rollup is then stored as running).
func startHeldRollup(t *testing.T, c fedreportv1.CoordinatorServiceClient, m *gateMember) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: wholeOperation})
		errc <- err
	}()
	select {
	case <-m.asked:
	case err := <-errc:
		t.Fatalf("rollup ended before the member was asked: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the member was not asked within 30s")
	}
	return errc
}

func TestCoordinatorKilledMidRollupMarksItInterrupted(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Coordinator("isa", "main"), identity.Operator("isa", "op"), identity.Node("isa", "FR"))
	member := &gateMember{asked: make(chan struct{}, 1), open: make(chan struct{})}
	addr := serveMember(t, f.source(t, identity.Node("isa", "FR")), member)
	db := filepath.Join(t.TempDir(), "coord.db")

	p, c := startCoordinator(t, f, db, addr, "--member-timeout", "60s")
	errc := startHeldRollup(t, c, member)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.wait(t, 10*time.Second)
	if err := <-errc; err == nil {
		t.Fatal("the rollup's caller got an answer from a killed coordinator")
	}

	// Restart on the same file: no manual step, the rollup is interrupted.
	close(member.open)
	_, c = startCoordinator(t, f, db, addr, "--member-timeout", "60s")
	list, err := c.ListRollups(callCtx(t), &fedreportv1.ListRollupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetRollups()); n != 1 {
		t.Fatalf("got %d rollups after the restart, want 1", n)
	}
	r := list.GetRollups()[0]
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || !strings.Contains(r.GetFailureReason(), "restarted") {
		t.Errorf("got %v %q, want interrupted because the coordinator restarted", r.GetState(), r.GetFailureReason())
	}
	if len(r.GetTotals()) != 0 {
		t.Errorf("an interrupted rollup shows totals: %v", r.GetTotals())
	}

	// The next rollup works.
	resp, err := c.StartRollup(callCtx(t), &fedreportv1.StartRollupRequest{Spec: wholeOperation})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetRollup(); got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || got.GetId() == r.GetId() {
		t.Errorf("next rollup: got %s %v, want a new complete rollup", got.GetId(), got.GetState())
	}
}

func TestCoordinatorSIGTERMStoresRunningRollupWithinDeadline(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Coordinator("isa", "main"), identity.Operator("isa", "op"), identity.Node("isa", "FR"))
	member := &gateMember{asked: make(chan struct{}, 1), open: make(chan struct{})}
	addr := serveMember(t, f.source(t, identity.Node("isa", "FR")), member)
	db := filepath.Join(t.TempDir(), "coord.db")

	p, c := startCoordinator(t, f, db, addr, "--member-timeout", "60s", "--shutdown-timeout", "500ms")
	errc := startHeldRollup(t, c, member)
	stopped := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("coordinator exited with %v after SIGTERM, want a clean exit:\n%s", err, p.output())
	}
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("SIGTERM took %s, want about the 500ms shutdown deadline", took)
	}
	<-errc // the caller gets the stored rollup or a transport error; either way it returns

	close(member.open)
	_, c = startCoordinator(t, f, db, addr)
	list, err := c.ListRollups(callCtx(t), &fedreportv1.ListRollupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetRollups()); n != 1 {
		t.Fatalf("got %d rollups, want 1", n)
	}
	if r := list.GetRollups()[0]; r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || !strings.Contains(r.GetFailureReason(), "stopping") {
		t.Errorf("got %v %q, want interrupted: coordinator stopping", r.GetState(), r.GetFailureReason())
	}
}
