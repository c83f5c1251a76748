package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestInterceptorsCountCallsAndServeMetricsOverHTTP(t *testing.T) {
	ca := testpki.New(t, "isa")
	reg := NewRegistry()
	g, err := NewGRPC(reg, "fedreport_test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGRPC(reg, "fedreport_test"); err == nil {
		t.Error("registering twice: got nil, want an error")
	}

	server := identity.Node("isa", "FR")
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(ca.ServerTLS(t, server))),
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-served
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, identity.Analyst("isa", "bob"), server))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for range 2 {
		if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: got %v, want NotFound", err)
	}
	srv.Stop()
	<-served
	// Streams are counted when their handler returns.
	stream := g.StreamServerInterceptor()
	_ = stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/fedreport.v1.NodeAdminService/IngestRecords"}, func(any, grpc.ServerStream) error {
		return status.Error(codes.InvalidArgument, "bad record")
	})

	const check = "/grpc.health.v1.Health/Check"
	for _, tt := range []struct {
		method, code string
		want         float64
	}{
		{check, "OK", 2},
		{check, "NotFound", 1},
		{"/fedreport.v1.NodeAdminService/IngestRecords", "InvalidArgument", 1},
	} {
		if got := testutil.ToFloat64(g.calls.WithLabelValues(tt.method, tt.code)); got != tt.want {
			t.Errorf("%s %s: got %v calls, want %v", tt.method, tt.code, got, tt.want)
		}
	}
	if got := testutil.CollectAndCount(g.latency); got != 2 {
		t.Errorf("latency series: got %d, want 2 (one per method)", got)
	}

	mlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var ready atomic.Bool
	go func() { done <- Serve(ctx, mlis, reg, ready.Load) }()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+mlis.Addr().String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`fedreport_test_grpc_server_handled_total{code="OK",method="/grpc.health.v1.Health/Check"} 2`,
		`fedreport_test_grpc_server_handling_seconds_count{method="/grpc.health.v1.Health/Check"} 3`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	probe := func(path string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+mlis.Addr().String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := probe("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200", got)
	}
	if got := probe("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the server is ready: got %d, want 503", got)
	}
	ready.Store(true)
	if got := probe("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz once ready: got %d, want 200", got)
	}
	client.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: got %v, want nil after its context ended", err)
	}
}

// BenchmarkUnaryServerInterceptor is the interceptor's cost per call, which
// every node Aggregate pays.
func BenchmarkUnaryServerInterceptor(b *testing.B) {
	g, err := NewGRPC(NewRegistry(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	intercept := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/fedreport.v1.AggregationService/Aggregate"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for b.Loop() {
		_, _ = intercept(b.Context(), nil, info, handler)
	}
}
