package grpcsrv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// peerContext returns a context as grpc-go builds it for a verified peer.
func peerContext(t *testing.T, cert *x509.Certificate) context.Context {
	t.Helper()
	info := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	return peer.NewContext(t.Context(), &peer.Peer{AuthInfo: info})
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ok(context.Context, any) (any, error) { return "ok", nil }

func TestRateLimitIsPerIdentityAndSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	alice := peerContext(t, ca.Cert(t, identity.Operator("isa", "alice")).Leaf)
	bob := peerContext(t, ca.Cert(t, identity.Operator("isa", "bob")).Leaf)
	clock := &fakeClock{now: time.Unix(1_600_000_000, 0)}
	start := fedreportv1.CoordinatorService_StartRollup_FullMethodName
	l := newRateLimiter(map[string]Rate{start: {PerSecond: 0.5, Burst: 2}}, clock.Now, "fedreport.test")
	info := &grpc.UnaryServerInfo{FullMethod: start}
	call := func(ctx context.Context) error { _, err := l.unary(ctx, nil, info, ok); return err }

	for i := range 2 {
		if err := call(alice); err != nil {
			t.Fatalf("alice call %d within the burst: %v", i+1, err)
		}
	}
	err := call(alice)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alice's third call: got %v, want ResourceExhausted", err)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{"spiffe://isa/operator/alice", "StartRollup", "30 times a minute", "retry in 2s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	var retry *errdetails.RetryInfo
	var info2 *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ErrorInfo:
			info2 = d
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() < 1900*time.Millisecond || retry.GetRetryDelay().AsDuration() > 2100*time.Millisecond {
		t.Errorf("RetryInfo: got %v, want about 2s", retry)
	}
	if info2.GetReason() != ReasonRateLimited || info2.GetDomain() != "fedreport.test" {
		t.Errorf("ErrorInfo: got %v", info2)
	}
	// Another identity has its own bucket; other methods are not limited.
	if err := call(bob); err != nil {
		t.Errorf("bob: got %v, want his own bucket", err)
	}
	if _, err := l.unary(alice, nil, &grpc.UnaryServerInfo{FullMethod: fedreportv1.CoordinatorService_GetRollup_FullMethodName}, ok); err != nil {
		t.Errorf("alice reading: got %v, want no limit", err)
	}
	// After the delay it said, the call goes through.
	clock.advance(2 * time.Second)
	if err := call(alice); err != nil {
		t.Errorf("alice after waiting: got %v", err)
	}
	// A call without an identity (a local socket) is not limited.
	for range 5 {
		if err := call(t.Context()); err != nil {
			t.Fatalf("local call: got %v", err)
		}
	}
}

func TestRateLimiterForgetsFullBuckets(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_600_000_000, 0)}
	l := newRateLimiter(map[string]Rate{"/m": {PerSecond: 1, Burst: 1}}, clock.Now, "x")
	for i := range maxBuckets {
		l.take("/m", string(rune('a'+i%26))+strings.Repeat("x", i/26), Rate{PerSecond: 1, Burst: 1})
	}
	clock.advance(2 * time.Second)
	l.take("/m", "new", Rate{PerSecond: 1, Burst: 1})
	if n := len(l.buckets); n != 1 {
		t.Errorf("got %d buckets after a sweep, want 1", n)
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	all := []fedreportv1.Metric{1, 2, 3, 4, 5}
	dims := []fedreportv1.Dimension{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		name   string
		req    any
		fields []string
	}{
		{"every metric and dimension once", &fedreportv1.AggregateRequest{Metrics: all, GroupBy: dims}, nil},
		{"six metrics", &fedreportv1.AggregateRequest{Metrics: append(all, 1)}, []string{"metrics"}},
		{"six dimensions in a rollup", &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{GroupBy: append(dims, 2)}}, []string{"spec.group_by"}},
		{"a million of both", &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{
			Metrics: make([]fedreportv1.Metric, 1_000_000), GroupBy: make([]fedreportv1.Dimension, 1_000_000)}}, []string{"spec.metrics", "spec.group_by"}},
		{"a rollup without a spec", &fedreportv1.StartRollupRequest{}, nil},
		{"another request", &fedreportv1.GetRollupRequest{Id: "x"}, nil},
	} {
		err := CheckBounds(tc.req, "d")
		if tc.fields == nil {
			if err != nil {
				t.Errorf("%s: got %v, want nil", tc.name, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", tc.name, err)
			continue
		}
		var got []string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					got = append(got, v.GetField())
				}
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("%s: got violations on %v, want %v", tc.name, got, tc.fields)
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "at most 5") || len(msg) > 300 {
			t.Errorf("%s: message %q should say the bound, briefly", tc.name, msg)
		}
	}
}

func TestDeadlineForCallsWithoutOne(t *testing.T) {
	t.Parallel()
	d := deadline(time.Minute)
	check := func(ctx context.Context, want time.Duration) {
		t.Helper()
		_, _ = d(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("handler got no deadline")
			}
			if left := time.Until(dl); left > want || left < want-10*time.Second {
				t.Errorf("got %v left, want about %v", left, want)
			}
			return nil, nil
		})
	}
	check(t.Context(), time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Hour)
	defer cancel()
	check(ctx, 5*time.Hour) // the caller's own deadline stands
}

func TestLimitsDefaults(t *testing.T) {
	t.Parallel()
	l := Limits{}.withDefaults()
	if l.MaxRecvMsgSize != 4<<20 || l.MaxConnectionAge != DefaultMaxConnectionAge || l.UnaryTimeout != DefaultUnaryTimeout || len(l.Rates) != len(DefaultRates) {
		t.Errorf("defaults: got %+v", l)
	}
	if MaxMetrics != 5 || MaxDimensions != 5 {
		t.Errorf("got bounds %d metrics, %d dimensions, want 5 and 5", MaxMetrics, MaxDimensions)
	}
	if n := len(ServerOptions(Limits{MaxConnectionAge: -1, Rates: map[string]Rate{}})); n == 0 {
		t.Error("no options")
	}
}

// echoLen answers an Aggregate with the length of its rollup id as member.
type echoLen struct {
	fedreportv1.UnimplementedAggregationServiceServer
}

func (echoLen) Aggregate(_ context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	return &fedreportv1.AggregateResponse{Member: strconv.Itoa(len(req.GetRollupId()))}, nil
}

func TestServerTakesRequestsUpToTheMessageLimit(t *testing.T) {
	t.Parallel()
	// The static windows (streamWindow, connWindow) replace grpc's dynamic
	// ones, which start at 64 KiB: a request of nearly DefaultMaxRecvMsgSize
	// still arrives whole, one after the other on one connection.
	srv := grpc.NewServer(ServerOptions(Limits{Rates: map[string]Rate{},
		RecvLimits: map[string]int{fedreportv1.AggregationService_Aggregate_FullMethodName: DefaultMaxRecvMsgSize}})...)
	fedreportv1.RegisterAggregationServiceServer(srv, echoLen{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := fedreportv1.NewAggregationServiceClient(conn)
	n := DefaultMaxRecvMsgSize - 1024
	for i := range 3 {
		resp, err := client.Aggregate(t.Context(), &fedreportv1.AggregateRequest{RollupId: strings.Repeat("r", n)})
		if err != nil {
			t.Fatalf("request %d of %d bytes: %v", i+1, n, err)
		}
		if got := resp.GetMember(); got != strconv.Itoa(n) {
			t.Errorf("request %d: server got %s bytes, want %d", i+1, got, n)
		}
	}
}

// TestAShortRetryDelayIsNotShownAsZero limits GetRollup to 20 calls a
// second: the refusal of the second call of a burst of 1 says to retry in
// 50ms, not in 0s.
func TestAShortRetryDelayIsNotShownAsZero(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	bob := peerContext(t, ca.Cert(t, identity.Analyst("isa", "bob")).Leaf)
	clock := &fakeClock{now: time.Unix(1_600_000_000, 0)}
	get := fedreportv1.CoordinatorService_GetRollup_FullMethodName
	l := newRateLimiter(map[string]Rate{get: {PerSecond: 20, Burst: 1}}, clock.Now, "fedreport.test")
	info := &grpc.UnaryServerInfo{FullMethod: get}
	if _, err := l.unary(bob, nil, info, ok); err != nil {
		t.Fatal(err)
	}
	_, err := l.unary(bob, nil, info, ok)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "retry in 50ms") {
		t.Errorf("second call at 20 a second: got %q, want it to say retry in 50ms", msg)
	}
}
