package pki

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
)

func TestInitIssueLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Init(dir, "isa"); err != nil {
		t.Fatal(err)
	}
	ca, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.TrustDomain != "isa" {
		t.Fatalf("got trust domain %q, want isa", ca.TrustDomain)
	}
	for _, tc := range []struct {
		id       identity.ID
		hosts    []string
		file     string
		wantDNS  []string
		wantIPs  int
		isServer bool
	}{
		{identity.Node("isa", "FR"), nil, "node-FR", []string{"localhost"}, 1, true},
		{identity.Coordinator("isa", "main"), []string{"coord.isa.example", "10.0.0.1", "::1"}, "coordinator-main", []string{"coord.isa.example"}, 2, true},
		{identity.Operator("isa", "alice"), nil, "operator-alice", nil, 0, false},
		{identity.MemberAdmin("isa", "FR", "ops"), nil, "member-admin-FR-ops", nil, 0, false},
	} {
		certPath, keyPath, err := ca.IssueToDir(dir, tc.id, tc.hosts)
		if err != nil {
			t.Fatalf("issue %s: %v", tc.id, err)
		}
		if got, want := filepath.Base(certPath), tc.file+".crt"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		st, err := os.Stat(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: got mode %v, want 0600", keyPath, st.Mode().Perm())
		}
		b, _ := os.ReadFile(certPath)
		cert, err := ParseCertificatePEM(b)
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.FromCertificate(cert)
		if err != nil || id != tc.id {
			t.Errorf("got identity %v (%v), want %v", id, err, tc.id)
		}
		if !slices.Equal(cert.DNSNames, tc.wantDNS) || len(cert.IPAddresses) != tc.wantIPs {
			t.Errorf("%s: got DNS %v IPs %v, want DNS %v and %d IPs", tc.id, cert.DNSNames, cert.IPAddresses, tc.wantDNS, tc.wantIPs)
		}
		if _, _, err := ca.IssueToDir(dir, tc.id, tc.hosts); !errors.Is(err, ErrExists) {
			t.Errorf("re-issue %s: got %v, want ErrExists", tc.id, err)
		}
	}
	if _, err := Init(dir, "isa"); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: got %v, want ErrExists", err)
	}
	if _, _, err := ca.Issue(identity.Node("other", "FR"), nil, ca.Cert.NotBefore, ca.Cert.NotAfter); err == nil {
		t.Fatal("issued for another trust domain, want an error")
	}
	if _, _, err := ca.IssueToDir(dir, identity.Analyst("isa", "bob"), []string{"x"}); err == nil {
		t.Fatal("issued a client certificate with hosts, want an error")
	}
}
