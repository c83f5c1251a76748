package mtls_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// syncBuffer is a log destination safe for the handshakes' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// filesFor writes id's files into a new directory and returns a source over
// them with a revocation list at crlPath, logging to log.
func filesFor(t *testing.T, ca *testpki.CA, id identity.ID, crlPath string, log *syncBuffer) *mtls.Files {
	t.Helper()
	caPath, certPath, keyPath := ca.WriteFiles(t, t.TempDir(), id)
	opts := []mtls.Option{mtls.WithCRL(crlPath)}
	if log != nil {
		opts = append(opts, mtls.WithLogger(slog.New(slog.NewTextHandler(log, nil))))
	}
	src, err := mtls.NewFiles(caPath, certPath, keyPath, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func leafOf(t *testing.T, src mtls.Source) *x509.Certificate {
	t.Helper()
	c, err := src.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%s: got %v, want the handshake refused (Unavailable)", what, err)
	}
}

func TestRevokedClientIsRefusedAtItsNextHandshake(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	crl := filepath.Join(t.TempDir(), "ca.crl")
	ca.WriteCRL(t, crl, 1)
	log := &syncBuffer{}
	server := filesFor(t, ca, identity.Node("isa", "FR"), crl, log)
	addr := serve(t, mtls.ServerConfig(server))
	alice := filesFor(t, ca, identity.Operator("isa", "alice"), "", nil)
	bob := filesFor(t, ca, identity.Operator("isa", "bob"), "", nil)
	if err := check(t, addr, mtls.ClientConfig(alice, nil)); err != nil {
		t.Fatalf("before revocation: %v", err)
	}

	ca.WriteCRL(t, crl, 2, leafOf(t, alice))
	wantRefused(t, check(t, addr, mtls.ClientConfig(alice, nil)), "alice after revocation")
	if err := check(t, addr, mtls.ClientConfig(bob, nil)); err != nil {
		t.Fatalf("bob, not revoked: %v", err)
	}
	if got := log.String(); !strings.Contains(got, "refused a peer whose certificate is revoked") ||
		!strings.Contains(got, "peer=spiffe://isa/operator/alice peer_serial="+mtls.SerialHex(leafOf(t, alice))) {
		t.Errorf("server log does not name the revoked peer in its own fields:\n%s", got)
	}

	// An older list (a lower CRL number) does not un-revoke anyone, nor
	// does deleting the file.
	ca.WriteCRL(t, crl, 1)
	wantRefused(t, check(t, addr, mtls.ClientConfig(alice, nil)), "alice after a rollback of the list")
	if !strings.Contains(log.String(), "went back from 2 to 1") {
		t.Errorf("server log does not report the rollback:\n%s", log.String())
	}
	if err := os.Remove(crl); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, check(t, addr, mtls.ClientConfig(alice, nil)), "alice after the list was deleted")

	// A list not signed by the CA is not loaded either.
	testpki.New(t, "isa").WriteCRL(t, crl, 9)
	wantRefused(t, check(t, addr, mtls.ClientConfig(alice, nil)), "alice after a foreign list")
	if !strings.Contains(log.String(), "not signed by a CA of the bundle") {
		t.Errorf("server log does not report the foreign list:\n%s", log.String())
	}
}

func TestClientRefusesARevokedServer(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	crl := filepath.Join(t.TempDir(), "ca.crl")
	ca.WriteCRL(t, crl, 1)
	server := filesFor(t, ca, identity.Node("isa", "FR"), "", nil)
	addr := serve(t, mtls.ServerConfig(server))
	coord := filesFor(t, ca, identity.Coordinator("isa", "main"), crl, nil)
	cfg := mtls.ClientConfig(coord, mtls.ExpectID(identity.Node("isa", "FR")))
	if err := check(t, addr, cfg); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	ca.WriteCRL(t, crl, 2, leafOf(t, server))
	err := check(t, addr, cfg)
	wantRefused(t, err, "a revoked server")
	if !strings.Contains(err.Error(), "revoked") {
		t.Errorf("got %v, want the reason to say revoked", err)
	}
}

func TestRevocationIsScopedToTheIssuingCA(t *testing.T) {
	t.Parallel()
	a, b := testpki.New(t, "isa"), testpki.New(t, "isa")
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.crt")
	if err := os.WriteFile(bundle, append(append([]byte{}, a.CertPEM...), b.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "ca.crl")
	client := filesFor(t, a, identity.Analyst("isa", "ann"), "", nil)
	// B's list names the serial of a certificate A issued: serials are
	// unique per CA only, so that must not revoke A's certificate.
	b.WriteCRL(t, crl, 1, leafOf(t, client))
	_, certPath, keyPath := a.WriteFiles(t, dir, identity.Node("isa", "FR"))
	server, err := mtls.NewFiles(bundle, certPath, keyPath, mtls.WithCRL(crl))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mtls.ServerConfig(server))
	if err := check(t, addr, mtls.ClientConfig(client, nil)); err != nil {
		t.Fatalf("a certificate of A listed on B's list: got %v, want it served", err)
	}
}

func TestNewFilesRefusesABadRevocationList(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	dir := t.TempDir()
	caPath, certPath, keyPath := ca.WriteFiles(t, dir, identity.Node("isa", "FR"))
	foreign := filepath.Join(dir, "foreign.crl")
	testpki.New(t, "isa").WriteCRL(t, foreign, 1)
	garbage := filepath.Join(dir, "garbage.crl")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"a list of another CA", foreign, "not signed by a CA of the bundle"},
		{"a file that is no list", garbage, "want only X509 CRL"},
		{"a missing file", filepath.Join(dir, "missing.crl"), "no such file"},
	} {
		_, err := mtls.NewFiles(caPath, certPath, keyPath, mtls.WithCRL(tc.path))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckRevocationWrapsErrRevoked(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	crl := filepath.Join(t.TempDir(), "ca.crl")
	ca.WriteCRL(t, crl, 1)
	src := filesFor(t, ca, identity.Node("isa", "FR"), crl, nil)
	peer := ca.Cert(t, identity.Operator("isa", "alice")).Leaf
	if err := src.CheckRevocation([][]*x509.Certificate{{peer, ca.CA.Cert}}); err != nil {
		t.Fatalf("before: got %v", err)
	}
	ca.WriteCRL(t, crl, 2, peer)
	err := src.CheckRevocation([][]*x509.Certificate{{peer, ca.CA.Cert}})
	if !errors.Is(err, mtls.ErrRevoked) || !strings.Contains(err.Error(), mtls.SerialHex(peer)) {
		t.Fatalf("after: got %v, want ErrRevoked naming serial %s", err, mtls.SerialHex(peer))
	}
}

func TestExpiryWarning(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	now := time.Now()
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		want     string
	}{
		{"a certificate valid for a year", now.Add(365 * 24 * time.Hour), ""},
		{"a certificate that expires in 10 days", now.Add(10*24*time.Hour + time.Hour), "days_left=10"},
		{"an expired certificate", now.Add(-time.Hour), "has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cert := ca.CertValid(t, identity.Node("isa", "FR"), now.Add(-2*time.Hour), tc.notAfter)
			caPath, certPath, keyPath := ca.WriteFiles(t, dir, identity.Node("isa", "FR"))
			writePEM(t, certPath, "CERTIFICATE", cert.Certificate[0])
			keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
			if err != nil {
				t.Fatal(err)
			}
			writePEM(t, keyPath, "PRIVATE KEY", keyDER)
			log := &syncBuffer{}
			if _, err := mtls.NewFiles(caPath, certPath, keyPath, mtls.WithLogger(slog.New(slog.NewTextHandler(log, nil)))); err != nil {
				t.Fatal(err)
			}
			got := log.String()
			if !strings.Contains(got, "TLS certificate loaded") {
				t.Errorf("log does not report the load:\n%s", got)
			}
			// (The test CA itself expires within the hour, which is warned about separately.)
			warned := strings.Contains(got, "TLS certificate expires soon") || strings.Contains(got, "TLS certificate has expired")
			if tc.want == "" && warned {
				t.Errorf("got a warning, want none:\n%s", got)
			}
			if tc.want != "" && (!warned || !strings.Contains(got, tc.want)) {
				t.Errorf("got %q, want a warning with %q", got, tc.want)
			}
		})
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestASourceWhoseOwnCertificateIsRevokedSaysSoAtStart(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	carol := filesFor(t, ca, identity.Operator("isa", "carol"), "", nil)
	crl := filepath.Join(t.TempDir(), "ca.crl")
	ca.WriteCRL(t, crl, 1, leafOf(t, carol))

	_, err := mtls.NewFiles(carol.CACert, carol.Cert, carol.Key, mtls.WithCRL(crl))
	if !errors.Is(err, mtls.ErrRevoked) {
		t.Fatalf("got %v, want ErrRevoked", err)
	}
	for _, want := range []string{"your certificate " + carol.Cert, "spiffe://isa/operator/carol", "serial " + mtls.SerialHex(leafOf(t, carol)), crl, "ask"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := mtls.NewFiles(carol.CACert, carol.Cert, carol.Key); err != nil {
		t.Errorf("without the list: %v", err)
	}
}
