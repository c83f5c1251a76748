package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/pki"
)

func TestPKICommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", dir, "--trust-domain", "isa")
	out := mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "node", "--member", "fr", "--hosts", "node.fr.example,10.1.2.3")
	if !strings.Contains(out, "spiffe://isa/node/FR") {
		t.Errorf("issue output %q does not name the identity", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "node-FR.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := identity.FromCertificate(cert); id != identity.Node("isa", "FR") {
		t.Errorf("got identity %v, want node/FR", id)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "node.fr.example" || len(cert.IPAddresses) != 1 {
		t.Errorf("got SANs %v %v, want node.fr.example and 10.1.2.3", cert.DNSNames, cert.IPAddresses)
	}
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "member-admin", "--member", "FR", "--name", "ops")
	if _, err := os.Stat(filepath.Join(dir, "member-admin-FR-ops.key")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown role", []string{"--role", "admin", "--name", "x"}, "not a role"},
		{"a node without a member", []string{"--role", "node"}, "member code"},
		{"an operator without a name", []string{"--role", "operator"}, "name"},
		{"a key that exists", []string{"--role", "node", "--member", "FR"}, "never overwrites"},
	} {
		_, _, err := runCLI(t, t.Context(), append([]string{"pki", "issue", "--dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestPKIRevokeAndList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", dir)
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "operator", "--name", "alice")
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "analyst", "--name", "bob")
	b, err := os.ReadFile(filepath.Join(dir, "analyst-bob.crt"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	bobSerial := pki.SerialHex(bob.SerialNumber)

	out := mustRunCLI(t, "pki", "list", "--dir", dir)
	if !strings.Contains(out, "IDENTITY") || !strings.Contains(out, "spiffe://isa/operator/alice") ||
		!strings.Contains(out, bobSerial) || strings.Count(out, "  valid") != 2 {
		t.Errorf("list before revoking:\n%s", out)
	}

	out = mustRunCLI(t, "pki", "revoke", "--dir", dir, "--cert", filepath.Join(dir, "operator-alice.crt"), "--reason", "key-compromise")
	if !strings.Contains(out, "revoked spiffe://isa/operator/alice") || !strings.Contains(out, "CRL number 2") {
		t.Errorf("revoke output:\n%s", out)
	}
	out = mustRunCLI(t, "pki", "revoke", "--dir", dir, "--serial", strings.ToLower(bobSerial), "--reason", "superseded")
	if !strings.Contains(out, "revoked spiffe://isa/analyst/bob") || !strings.Contains(out, "CRL number 3") {
		t.Errorf("revoke by serial output:\n%s", out)
	}
	out = mustRunCLI(t, "pki", "revoke", "--dir", dir, "--serial", bobSerial)
	if !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke output:\n%s", out)
	}
	out = mustRunCLI(t, "pki", "list", "--dir", dir)
	if !strings.Contains(out, "(key-compromise)") || !strings.Contains(out, "(superseded)") {
		t.Errorf("list after revoking:\n%s", out)
	}
	out = mustRunCLI(t, "pki", "list", "--dir", dir, "-o", "json")
	if !strings.Contains(out, `"revoked_at"`) || !strings.Contains(out, `"serial": "`+bobSerial+`"`) {
		t.Errorf("list -o json:\n%s", out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"neither --cert nor --serial", nil, "exactly one"},
		{"both", []string{"--serial", "1", "--cert", "x"}, "exactly one"},
		{"a serial never issued", []string{"--serial", "DEADBEEF"}, "no certificate with that serial"},
		{"a serial that is not hex", []string{"--serial", "zz"}, "hexadecimal"},
		{"an unknown reason", []string{"--serial", bobSerial, "--reason", "bored"}, "key-compromise"},
	} {
		_, _, err := runCLI(t, t.Context(), append([]string{"pki", "revoke", "--dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}
