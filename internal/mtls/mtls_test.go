package mtls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts a gRPC server with the health service behind mTLS and authz.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rules := authz.Rules{}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)),
		grpc.UnaryInterceptor(authz.UnaryServerInterceptor(rules)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

func check(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	other := testpki.New(t, "isa")
	nodeFR := identity.Node("isa", "FR")
	op := identity.Operator("isa", "alice")
	addr := serve(t, ca.ServerTLS(t, nodeFR))

	now := time.Now()
	expired := &mtls.Static{Cert: ca.CertValid(t, op, now.Add(-2*time.Hour), now.Add(-time.Hour)), Pool: ca.Pool()}
	foreign := &mtls.Static{Cert: other.Cert(t, op), Pool: ca.Pool()}
	noCert := mtls.ClientConfig(&mtls.Static{Pool: ca.Pool()}, nil)
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	tls12 := ca.ClientTLS(t, op, nodeFR)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"a client of the alliance CA is served", ca.ClientTLS(t, op, nodeFR), true},
		{"a client expecting another member's node refuses the server", ca.ClientTLS(t, op, identity.Node("isa", "IT")), false},
		{"a client without a certificate is refused", noCert, false},
		{"a certificate of another CA with a valid-looking identity is refused", mtls.ClientConfig(foreign, nil), false},
		{"an expired certificate is refused", mtls.ClientConfig(expired, nil), false},
		{"a TLS 1.2-only client is refused", tls12, false},
		{"a client that does not trust the server's CA refuses it", mtls.ClientConfig(&mtls.Static{Cert: ca.Cert(t, op), Pool: other.Pool()}, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := check(t, addr, tc.cfg)
			if tc.ok && err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("got success, want a refused handshake")
				}
				if c := status.Code(err); c != codes.Unavailable {
					t.Fatalf("got %v (%v), want the handshake to fail (Unavailable) before any handler", c, err)
				}
			}
		})
	}
}

func TestServerRefusesCertificateWithoutIdentity(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	addr := serve(t, ca.ServerTLS(t, identity.Node("isa", "FR")))
	// A certificate signed by the alliance CA but carrying no URI SAN.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "operator/alice"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.CA.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	err = check(t, addr, mtls.ClientConfig(&mtls.Static{Cert: cert, Pool: ca.Pool()}, nil))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want the handshake refused", err)
	}
}

func TestFilesReloadOnRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := pki.Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	fr := identity.Node("isa", "FR")
	certPath, keyPath, err := ca.IssueToDir(dir, fr, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := mtls.NewFiles(filepath.Join(dir, pki.CACertFile), certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	// Rotate: issue a new pair and move it over the old files.
	newDir := t.TempDir()
	newCert, newKey, err := ca.IssueToDir(newDir, fr, nil)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{newCert: certPath, newKey: keyPath} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	// Renames keep sizes equal for same-shaped PEM; make sure mtime differs.
	later := time.Now().Add(time.Second)
	for _, p := range []string{certPath, keyPath} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	second, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Fatal("got the old certificate after rotation, want the new one")
	}
}

func TestNewFilesReportsMissingFlags(t *testing.T) {
	t.Parallel()
	if _, err := mtls.NewFiles("", "a", "b"); err == nil {
		t.Fatal("got nil, want an error naming the TLS flags")
	}
	if _, err := mtls.NewFiles("/nonexistent/ca.crt", "/nonexistent/a", "/nonexistent/b"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}
