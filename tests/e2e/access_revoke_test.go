package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// accPKI is a pki directory as `fedreport pki` keeps it: CA, index,
// revocation list, and the certificates issued into it.
type accPKI struct {
	dir string
	ca  *pki.CA
}

func accNewPKI(t *testing.T) *accPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(dir, accTD)
	if err != nil {
		t.Fatal(err)
	}
	return &accPKI{dir: dir, ca: ca}
}

// issue issues id into the directory, as `fedreport pki issue` does.
func (p *accPKI) issue(t *testing.T, id identity.ID) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath, err := p.ca.IssueToDir(p.dir, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// files is a source over a certificate of the directory that checks peers
// against its revocation list, as --cacert --cert --key --crl give it.
func (p *accPKI) files(t *testing.T, certPath, keyPath string) *mtls.Files {
	t.Helper()
	src, err := mtls.NewFiles(filepath.Join(p.dir, pki.CACertFile), certPath, keyPath, mtls.WithCRL(filepath.Join(p.dir, pki.CRLFile)))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// issueFiles issues id and returns a source over it and its certificate file.
func (p *accPKI) issueFiles(t *testing.T, id identity.ID) (*mtls.Files, string) {
	t.Helper()
	certPath, keyPath := p.issue(t, id)
	return p.files(t, certPath, keyPath), certPath
}

// revoke revokes the certificate in certPath, as `fedreport pki revoke --cert` does.
func (p *accPKI) revoke(t *testing.T, certPath string) {
	t.Helper()
	if _, _, err := pki.Revoke(p.dir, pki.RevokeRequest{Cert: accReadCert(t, certPath), Reason: 1}); err != nil {
		t.Fatal(err)
	}
}

func accReadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func accHealth(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestRevocationWithoutRestart revokes, with the pki directory's revocation
// list that the running servers and clients read (--crl), a member admin, an
// operator and a node: each is refused on its next connection, nothing is
// restarted, and a connection opened before the revocation is closed by the
// server's maximum connection age and cannot come back.
func TestRevocationWithoutRestart(t *testing.T) {
	accLeakCheck(t)
	p := accNewPKI(t)
	short := grpcsrv.Limits{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: 200 * time.Millisecond}
	nodeSrc, nodeCert := p.issueFiles(t, accNodeID("FR"))
	me := identity.Coordinator(accTD, "main")
	coordSrc, _ := p.issueFiles(t, me)
	fr := accNode(t, "FR", mtls.ServerConfig(nodeSrc), short)
	c := accCoordinator(t, accCoordinatorConfig{
		serverTLS: mtls.ServerConfig(coordSrc),
		memberTLS: func(code string) (*tls.Config, error) {
			return mtls.ClientConfig(coordSrc, mtls.ExpectID(accNodeID(code))), nil
		},
		limits: short,
	}, coordinator.Member{Code: "FR", Address: fr})
	ctx := accCtx(t)

	adminSrc, adminCert := p.issueFiles(t, identity.MemberAdmin(accTD, "FR", "ops"))
	adminTLS := mtls.ClientConfig(adminSrc, mtls.ExpectID(accNodeID("FR")))
	aliceSrc, aliceCert := p.issueFiles(t, identity.Operator(accTD, "alice"))
	aliceTLS := mtls.ClientConfig(aliceSrc, mtls.ExpectID(me))
	stats := func(conn *grpc.ClientConn) error {
		_, err := fedreportv1.NewNodeAdminServiceClient(conn).GetNodeStats(ctx, &fedreportv1.GetNodeStatsRequest{})
		return err
	}
	rollupFR := func() *fedreportv1.MemberResult {
		t.Helper()
		r, err := c.StartRollup(ctx, accPeriod, "test")
		if err != nil {
			t.Fatal(err)
		}
		return r.GetMembers()[0]
	}

	long := accDial(t, fr, adminTLS)
	if err := stats(long); err != nil {
		t.Fatalf("member admin before revocation: %v", err)
	}
	if err := accHealth(ctx, accDial(t, c.addr, aliceTLS)); err != nil {
		t.Fatalf("operator before revocation: %v", err)
	}
	if m := rollupFR(); m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
		t.Fatalf("FR before revocation: got %v %q", m.GetStatus(), m.GetReason())
	}

	// The member admin: refused on a new connection at once...
	p.revoke(t, adminCert)
	if err := stats(accDial(t, fr, adminTLS)); status.Code(err) != codes.Unavailable {
		t.Errorf("member admin after revocation, new connection: got %v, want the handshake refused", err)
	}
	// ...and on the old one once the node has closed it (MaxConnectionAge).
	for {
		err := stats(long)
		if status.Code(err) == codes.Unavailable {
			break
		}
		if err != nil {
			t.Fatalf("member admin's old connection: got %v, want success until it is closed, then Unavailable", err)
		}
		if !long.WaitForStateChange(ctx, connectivity.Ready) {
			t.Fatal("the node never closed the revoked member admin's connection")
		}
	}

	// The operator, at the coordinator.
	p.revoke(t, aliceCert)
	if err := accHealth(ctx, accDial(t, c.addr, aliceTLS)); status.Code(err) != codes.Unavailable {
		t.Errorf("operator after revocation: got %v, want the handshake refused", err)
	}

	// FR's node certificate: the coordinator (a client with the list)
	// refuses it once its connection to FR has aged out; that connection is
	// internal to the coordinator, so the test watches rollups, paced by a ticker.
	p.revoke(t, nodeCert)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		m := rollupFR()
		if m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			if !strings.Contains(m.GetReason(), "revoked") {
				t.Errorf("FR after its certificate was revoked: got %v %q, want a reason that says revoked", m.GetStatus(), m.GetReason())
			}
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the coordinator kept counting FR after FR's certificate was revoked")
		}
	}
}

// TestServerCertificateRotation rotates FR's node certificate on disk, as
// docs/security.md says (move the old pair away, issue a new one): the node keeps
// serving throughout, new connections get the new certificate, and the old
// one can then be revoked without touching the node.
func TestServerCertificateRotation(t *testing.T) {
	accLeakCheck(t)
	p := accNewPKI(t)
	certPath, keyPath := p.issue(t, accNodeID("FR"))
	fr := accNode(t, "FR", mtls.ServerConfig(p.files(t, certPath, keyPath)), grpcsrv.Limits{})
	adminSrc, _ := p.issueFiles(t, identity.MemberAdmin(accTD, "FR", "ops"))
	adminTLS := mtls.ClientConfig(adminSrc, mtls.ExpectID(accNodeID("FR")))
	served := func() string {
		t.Helper()
		cfg := adminTLS.Clone()
		cfg.NextProtos = []string{"h2"}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", fr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return mtls.SerialHex(conn.ConnectionState().PeerCertificates[0])
	}
	old := accReadCert(t, certPath)
	if got, want := served(), mtls.SerialHex(old); got != want {
		t.Fatalf("before rotation: served serial %s, want %s", got, want)
	}

	for _, f := range []string{certPath, keyPath} {
		if err := os.Rename(f, f+".old"); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := served(), mtls.SerialHex(old); got != want {
		t.Errorf("with the files moved away: served %s, want the loaded %s", got, want)
	}
	p.issue(t, accNodeID("FR"))
	renewed := accReadCert(t, certPath)
	if got, want := served(), mtls.SerialHex(renewed); got != want {
		t.Errorf("after rotation: served serial %s, want the new %s", got, want)
	}
	ctx := accCtx(t)
	if err := accHealth(ctx, accDial(t, fr, adminTLS)); err != nil {
		t.Errorf("a client after rotation: %v", err)
	}
	p.revoke(t, certPath+".old")
	if err := accHealth(ctx, accDial(t, fr, adminTLS)); err != nil {
		t.Errorf("a client after the old certificate was revoked: %v", err)
	}
}
