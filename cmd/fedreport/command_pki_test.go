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
