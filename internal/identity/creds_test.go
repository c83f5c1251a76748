package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// TestServerCredentialsCarryIdentity makes mTLS calls through a listener
// with ServerCredentials and checks that the handler sees the caller's
// identity, parsed at the handshake, and grpc's TLS view of the connection.
func TestServerCredentialsCarryIdentity(t *testing.T) {
	ca := testpki.New(t, "isa")
	srvID := identity.Node("isa", "FR")
	type seen struct {
		id       identity.ID
		ok       bool
		authType string
		info     credentials.AuthInfo
	}
	got := make(chan seen, 4)
	srv := grpc.NewServer(
		grpc.Creds(identity.ServerCredentials(ca.ServerTLS(t, srvID))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, ok := identity.FromContext(ctx)
			var ai credentials.AuthInfo
			var at string
			if p, ok := peer.FromContext(ctx); ok && p.AuthInfo != nil {
				ai, at = p.AuthInfo, p.AuthInfo.AuthType()
			}
			got <- seen{id: id, ok: ok, authType: at, info: ai}
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	for _, caller := range []identity.ID{identity.Analyst("isa", "ana"), identity.MemberAdmin("isa", "FR", "ops")} {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, caller, srvID))))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second call reuses the connection and its AuthInfo
			if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("%s: %v", caller, err)
			}
			s := <-got
			if !s.ok || s.id != caller {
				t.Errorf("FromContext = %v, %v; want %v, true", s.id, s.ok, caller)
			}
			if s.authType != "tls" {
				t.Errorf("AuthType = %q, want tls", s.authType)
			}
			if _, ok := s.info.(identity.AuthInfo); !ok {
				t.Errorf("AuthInfo is %T, want identity.AuthInfo", s.info)
			}
		}
		conn.Close()
	}
}

// BenchmarkFromContext compares the identity of a call read from the
// connection's AuthInfo (parsed at the handshake) with parsing the
// certificate's URI SAN on every call, as grpc's plain TLSInfo needs.
func BenchmarkFromContext(b *testing.B) {
	ca := testpki.New(b, "isa")
	want := identity.Coordinator("isa", "main")
	cert := ca.Cert(b, want)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	tlsInfo := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}
	for _, bc := range []struct {
		name string
		info credentials.AuthInfo
	}{
		{"TLSInfo", tlsInfo},
		{"AuthInfo", identity.NewAuthInfo(tlsInfo)},
	} {
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: bc.info})
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if id, ok := identity.FromContext(ctx); !ok || id != want {
					b.Fatalf("FromContext = %v, %v", id, ok)
				}
			}
		})
	}
}
