package mtls_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// TestRevocationClosesOpenConnections connects alice and bob to a server
// that reads a revocation list, then revokes alice: the server closes
// alice's open connection within a few of its recheck periods, and her
// next handshake is refused, while bob's connection stays up, the same
// connection (no new handshake).
func TestRevocationClosesOpenConnections(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	crl := filepath.Join(t.TempDir(), "ca.crl")
	ca.WriteCRL(t, crl, 1)
	server := filesFor(t, ca, identity.Node("isa", "FR"), crl, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(mtls.ServerCredentialsEvery(mtls.ServerConfig(server), 50*time.Millisecond)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })

	dial := func(src mtls.Source, handshakes *atomic.Int32) *grpc.ClientConn {
		cfg := mtls.ClientConfig(src, mtls.ExpectID(identity.Node("isa", "FR")))
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			handshakes.Add(1)
			return verify(cs)
		}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	alice := filesFor(t, ca, identity.Operator("isa", "alice"), "", nil)
	var aliceHS, bobHS atomic.Int32
	aliceConn := dial(alice, &aliceHS)
	bobConn := dial(filesFor(t, ca, identity.Operator("isa", "bob"), "", nil), &bobHS)

	ca.WriteCRL(t, crl, 2, leafOf(t, alice))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if !aliceConn.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatalf("alice's connection is still %v 10s after her revocation, want it closed", aliceConn.GetState())
	}
	if _, err := healthpb.NewHealthClient(aliceConn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("alice's call after her revocation succeeded")
	}
	if _, err := healthpb.NewHealthClient(bobConn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("bob's call after alice's revocation: %v", err)
	}
	if n := bobHS.Load(); n != 1 {
		t.Errorf("bob made %d handshakes, want 1: his connection must stay up", n)
	}
}
