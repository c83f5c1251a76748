package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const td = "isa"

// fakeNode is a member node for tests: a real gRPC server over real mTLS
// whose answers come from func fields.
type fakeNode struct {
	fedreportv1.UnimplementedAggregationServiceServer
	aggregate func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error)
	describe  func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error)

	mu   sync.Mutex
	reqs []*fedreportv1.AggregateRequest // every Aggregate request received
}

func (f *fakeNode) Aggregate(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.aggregate == nil {
		return nil, status.Error(codes.Unimplemented, "no aggregate")
	}
	return f.aggregate(ctx, req)
}

func (f *fakeNode) DescribeNode(ctx context.Context, req *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	if f.describe == nil {
		return nil, status.Error(codes.Unimplemented, "no describe")
	}
	return f.describe(ctx, req)
}

func (f *fakeNode) requests() []*fedreportv1.AggregateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fedreportv1.AggregateRequest(nil), f.reqs...)
}

// startNode serves f on 127.0.0.1:0, presenting the certificate of id, and
// returns its address.
func startNode(t *testing.T, ca *testpki.CA, id identity.ID, f *fakeNode) string {
	t.Helper()
	return startNodeAt(t, ca, "127.0.0.1:0", id, f)
}

// startNodeAt is startNode on a given address.
func startNodeAt(t *testing.T, ca *testpki.CA, addr string, id identity.ID, f *fakeNode) string {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(t, id))))
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

// closedAddr returns an address on which nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// answers returns an aggregate func that answers as member code with k and
// the given cells, whatever the request.
func answers(code string, k uint32, cells ...*fedreportv1.Cell) func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	return func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		return &fedreportv1.AggregateResponse{Member: code, MinCellCount: k, DataVersion: 7, Cells: cells}, nil
	}
}

// exact is a cell with a disclosed count.
func exact(m fedreportv1.Metric, n uint64) *fedreportv1.Cell {
	return &fedreportv1.Cell{Metric: m, Count: n, LowerBound: n, UpperBound: n}
}

// suppressed is a cell a node withheld under min cell count k.
func suppressed(m fedreportv1.Metric, k uint64) *fedreportv1.Cell {
	return &fedreportv1.Cell{Metric: m, SuppressedCells: 1, LowerBound: 1, UpperBound: k - 1}
}

// withMonth sets a cell's month.
func withMonth(c *fedreportv1.Cell, month string) *fedreportv1.Cell {
	c.Month = month
	return c
}

const (
	arrests = fedreportv1.Metric_METRIC_ARRESTS
	victims = fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
	sites   = fedreportv1.Metric_METRIC_SITES_BLOCKED
)

// testCoordinator is a coordinator under test with its CA and log, as text
// and as records.
type testCoordinator struct {
	*Coordinator
	ca      *testpki.CA
	path    string
	log     *syncBuffer
	records *recordLog
}

// recordLog is a slog.Handler that keeps every record, so that a test can
// check what the log carries attribute by attribute rather than in text,
// where a timestamp's milliseconds or a temporary path may hold any digits.
type recordLog struct {
	mu      *sync.Mutex
	records *[]slog.Record
	attrs   []slog.Attr // from WithAttrs; groups are flattened
}

func newRecordLog() *recordLog {
	return &recordLog{mu: &sync.Mutex{}, records: new([]slog.Record)}
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(l.attrs...)
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.records = append(*l.records, r)
	return nil
}

func (l *recordLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recordLog{mu: l.mu, records: l.records, attrs: append(slices.Clip(l.attrs), attrs...)}
}

func (l *recordLog) WithGroup(string) slog.Handler { return l }

// numbers returns every number the log carries as data: each numeric
// attribute, and each whole run of digits in messages and in other values
// (so "FR=ok", an address or a path holds only its own numbers, never a
// count that is part of a longer one). Times and durations are left out:
// slog and time.Since make them, not the data.
func (l *recordLog) numbers() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	digitRuns := func(s string) {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
			out[f] = true
		}
	}
	var value func(v slog.Value)
	value = func(v slog.Value) {
		switch v = v.Resolve(); v.Kind() {
		case slog.KindTime, slog.KindDuration, slog.KindBool:
		case slog.KindInt64:
			out[strconv.FormatInt(v.Int64(), 10)] = true
		case slog.KindUint64:
			out[strconv.FormatUint(v.Uint64(), 10)] = true
		case slog.KindGroup:
			for _, a := range v.Group() {
				value(a.Value)
			}
		default: // strings, floats and anything else, as text
			digitRuns(v.String())
		}
	}
	for _, r := range *l.records {
		digitRuns(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			value(a.Value)
			return true
		})
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig returns a coordinator configuration for members whose node
// certificates come from ca.
func testConfig(t testing.TB, ca *testpki.CA, members ...Member) Config {
	t.Helper()
	me := identity.Coordinator(td, "main")
	return Config{
		DataPath: filepath.Join(t.TempDir(), "coord.db"),
		Members:  members,
		MemberTLS: func(code string) (*tls.Config, error) {
			return ca.ClientTLS(t, me, identity.Node(td, code)), nil
		},
		ServerTLS:   ca.ServerTLS(t, me),
		TrustDomain: td,
		Version:     "test",
	}
}

// newCoordinator opens a coordinator with cfg and closes it when the test ends.
func newCoordinator(t testing.TB, ca *testpki.CA, cfg Config) *testCoordinator {
	t.Helper()
	buf, records := &syncBuffer{}, newRecordLog()
	cfg.Logger = slog.New(slog.NewMultiHandler(slog.NewTextHandler(buf, nil), records))
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &testCoordinator{Coordinator: c, ca: ca, path: cfg.DataPath, log: buf, records: records}
}
