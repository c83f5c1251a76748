package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// TestRevokeReachesARunningNode runs `fedreport node --crl` and revokes, with
// `fedreport pki revoke`, first a member admin (the node refuses it) and
// then the node itself (a client with --crl refuses the node), without
// restarting the node.
func TestRevokeReachesARunningNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "node", "--member", "FR")
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "member-admin", "--member", "FR", "--name", "ops")
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "member-admin", "--member", "FR", "--name", "ops2")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr := freeAddr(t)

	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, err := runCLI(t, ctx, "node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", addr,
			"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"), "--crl", p("ca.crl"))
		done <- result{stderr, err}
	}()
	stopped := false
	stop := func() result {
		cancel()
		stopped = true
		return <-done
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})

	// Wait for the node through its health service.
	src, err := mtls.NewFiles(p("ca.crt"), p("member-admin-FR-ops2.crt"), p("member-admin-FR-ops2.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(src, mtls.ExpectID(identity.Node("isa", "FR"))))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hctx, hcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer hcancel()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("node did not come up: %v", err)
	}
	_ = conn.Close()

	audit := func(name string) error {
		_, _, err := runCLI(t, t.Context(), "audit", "--node", addr, "--cacert", p("ca.crt"),
			"--cert", p(name+".crt"), "--key", p(name+".key"), "--crl", p("ca.crl"))
		return err
	}
	if err := audit("member-admin-FR-ops"); err != nil {
		t.Fatalf("audit before revocation: %v", err)
	}
	mustRunCLI(t, "pki", "revoke", "--dir", pkiDir, "--cert", p("member-admin-FR-ops.crt"), "--reason", "key-compromise")
	// Without the list, the client does not know: the node refuses it.
	if _, _, err := runCLI(t, t.Context(), "audit", "--node", addr, "--cacert", p("ca.crt"),
		"--cert", p("member-admin-FR-ops.crt"), "--key", p("member-admin-FR-ops.key")); err == nil || !strings.Contains(err.Error(), "the certificate in --cert: revoked, expired, or not issued by this federation's CA") {
		t.Errorf("audit with a revoked certificate: got %v, want the handshake refused and the certificate named as the cause", err)
	}
	if err := audit("member-admin-FR-ops2"); err != nil {
		t.Errorf("audit by another admin: %v", err)
	}
	mustRunCLI(t, "pki", "revoke", "--dir", pkiDir, "--cert", p("node-FR.crt"))
	if err := audit("member-admin-FR-ops2"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("audit of a revoked node: got %v, want the client to refuse it as revoked", err)
	}

	res := stop()
	if res.err != nil {
		t.Fatalf("node: %v\n%s", res.err, res.stderr)
	}
	for _, want := range []string{"TLS certificate loaded", "revocation list loaded", `msg="refused a peer whose certificate is revoked"`, "peer=spiffe://isa/member-admin/FR/ops peer_serial="} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("node log has no %q:\n%s", want, res.stderr)
		}
	}
}

// TestAnotherMembersAdminIsToldWhichMember calls FR's node with IT's
// member-admin certificate: the role is right, the member is not, and the
// node's refusal says which member's certificate the call needs; the CLI
// refuses FR's node already in the handshake.
func TestAnotherMembersAdminIsToldWhichMember(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "node", "--member", "FR")
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "member-admin", "--member", "IT", "--name", "ops")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr := freeAddr(t)
	itAdmin := identity.MemberAdmin("isa", "IT", "ops")
	conn := serveCLI(t, pkiDir, addr, itAdmin, identity.Node("isa", "FR"),
		"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", addr,
		"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"))

	want := "spiffe://isa/member-admin/IT/ops may not call " + fedreportv1.NodeAdminService_GetNodeStats_FullMethodName +
		": this is the node of member FR; it needs a member-admin certificate of FR"
	_, err := fedreportv1.NewNodeAdminServiceClient(conn).GetNodeStats(t.Context(), &fedreportv1.GetNodeStatsRequest{})
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != want {
		t.Errorf("GetNodeStats: got %v, want PermissionDenied %q", err, want)
	}

	// The CLI does not get as far as the call: IT's admin talks only to
	// IT's node, and says so in the handshake.
	_, _, err = runCLI(t, t.Context(), "audit", "--node", addr, "--cacert", p("ca.crt"),
		"--cert", p("member-admin-IT-ops.crt"), "--key", p("member-admin-IT-ops.key"))
	for _, want := range []string{
		"server identity is spiffe://isa/node/FR, want spiffe://isa/node/IT",
		"nothing was sent to it",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("audit: got %v, want an error containing %q", err, want)
		}
	}
}

func TestARevokedClientWithTheListIsToldBeforeDialing(t *testing.T) {
	t.Parallel()
	pkiDir := filepath.Join(t.TempDir(), "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "operator", "--name", "carol")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	mustRunCLI(t, "pki", "revoke", "--dir", pkiDir, "--cert", p("operator-carol.crt"))

	// No coordinator listens there: the CLI must not get as far as dialing.
	_, _, err := runCLI(t, t.Context(), "members", "--coordinator", freeAddr(t), "--cacert", p("ca.crt"),
		"--cert", p("operator-carol.crt"), "--key", p("operator-carol.key"), "--crl", p("ca.crl"))
	if err == nil {
		t.Fatal("members with a revoked certificate succeeded")
	}
	for _, want := range []string{"your certificate " + p("operator-carol.crt"), "spiffe://isa/operator/carol", "serial ", "is revoked by the revocation list " + p("ca.crl"), "ask"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
