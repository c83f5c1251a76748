package grpcsrv

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.0/8 is all loopback on Linux, so each is another source). A
// connection the server closes at once may be reset before the dial
// returns: that is the error then.
func dialFrom(t *testing.T, src, addr string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// mustDialFrom is dialFrom for a connection that must be accepted.
func mustDialFrom(t *testing.T, src, addr string) {
	t.Helper()
	if _, err := dialFrom(t, src, addr); err != nil {
		t.Fatal(err)
	}
}

// receive returns the next value of ch, failing the test if none comes
// within a generous deadline.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		var zero T
		t.Fatalf("%s: nothing within 30s", what)
		return zero
	}
}

// TestLimitListenerClosesConnectionsPastItsCaps accepts with a cap of 2
// connections per source address and 3 in all: a third connection from one
// address is closed as the source's, a fourth address's as the
// listener's, and once an accepted connection closes its place is free again.
func TestLimitListenerClosesConnectionsPastItsCaps(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, 10)
	lis := LimitListener(tcp, Limits{MaxConnections: 3, MaxConnectionsPerSource: 2, ConnectionRefused: func(c string) { refused <- c }})
	t.Cleanup(func() { lis.Close() })
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := tcp.Addr().String()

	mustDialFrom(t, "127.0.0.1", addr)
	first := receive(t, accepted, "first connection")
	mustDialFrom(t, "127.0.0.1", addr)
	receive(t, accepted, "second connection of 127.0.0.1")
	third, err := dialFrom(t, "127.0.0.1", addr)
	if got := receive(t, refused, "third connection of 127.0.0.1"); got != CapSource {
		t.Errorf("third connection of one source: refused by %q, want %q", got, CapSource)
	}
	if err == nil {
		// The client sees its connection closed before any byte.
		_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := third.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("refused connection: read %d bytes, %v; want it closed", n, err)
		}
	}
	mustDialFrom(t, "127.0.0.2", addr)
	receive(t, accepted, "connection of 127.0.0.2")
	_, _ = dialFrom(t, "127.0.0.3", addr)
	if got := receive(t, refused, "fourth connection"); got != CapListener {
		t.Errorf("fourth connection: refused by %q, want %q", got, CapListener)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	_ = first.Close() // a second Close must not free a second place
	mustDialFrom(t, "127.0.0.1", addr)
	receive(t, accepted, "a connection of 127.0.0.1 after one closed")
	_, _ = dialFrom(t, "127.0.0.4", addr)
	if got := receive(t, refused, "a connection past the listener's cap again"); got != CapListener {
		t.Errorf("after a close and a new connection: refused by %q, want %q", got, CapListener)
	}
}

// TestAFloodOfIdleConnectionsLeavesAConnectedClientServed serves health
// over mTLS with the default limits, connects a client, then opens 300 idle
// TCP connections from the same loopback address: past the default cap
// per source (64, the client's included) each is closed as it is accepted,
// and the connected client's health check still answers.
func TestAFloodOfIdleConnectionsLeavesAConnectedClientServed(t *testing.T) {
	t.Parallel()
	const flood = 300
	ca := testpki.New(t, "isa")
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, flood)
	lis := LimitListener(tcp, Limits{ConnectionRefused: func(c string) { refused <- c }})
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(ca.ServerTLS(t, identity.Node("isa", "FR"))))},
		ServerOptions(Limits{})...)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	conn, err := grpc.NewClient(tcp.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		ca.ClientTLS(t, identity.Coordinator("isa", "main"), identity.Node("isa", "FR")))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	check := func(what string) time.Duration {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health check %s: %v", what, err)
		}
		return time.Since(start)
	}
	before := check("before the flood")

	for range flood {
		_, _ = dialFrom(t, "127.0.0.1", tcp.Addr().String())
	}
	want := flood - (DefaultMaxConnectionsPerSource - 1)
	for i := range want {
		if got := receive(t, refused, "a refusal of the flood"); got != CapSource {
			t.Fatalf("refusal %d: cap %q, want %q", i+1, got, CapSource)
		}
	}
	during := check("during the flood")
	t.Logf("%d idle connections, %d refused; health check %v before, %v during", flood, want, before, during)
	select {
	case c := <-refused:
		t.Errorf("more refusals than the connections past the cap: one more by %q", c)
	default:
	}
}
