package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// TestARateLimitedCallWaitsWithinItsDeadline runs `fedreport members`
// against a real coordinator that allows one ListMembers at once: a second
// call right after waits out the server's delay, says so, and succeeds; a
// limit whose delay is past the call's deadline is reported at once, in
// the server's words.
func TestARateLimitedCallWaitsWithinItsDeadline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	coordinator := func(rate string) []string {
		addr := freeAddr(t)
		config := writeFile(t, "coord.yaml", "list_members_rate: "+rate+"\nlist_members_burst: 1\nmembers:\n  - {code: FR, address: "+freeAddr(t)+"}\n")
		serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
			"coordinator", "--config", config, "--data", filepath.Join(t.TempDir(), "coord.db"), "--listen", addr,
			"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
		return []string{"members", "--coordinator", addr, "--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key")}
	}

	members := coordinator("4") // a call again every 250 ms
	mustRunCLI(t, members...)
	out, stderr, err := runCLI(t, t.Context(), members...)
	if err != nil || !strings.Contains(out, "FR") {
		t.Fatalf("second members right after the first: got %v\n%s", err, out)
	}
	if !strings.Contains(stderr, "waiting: the server's rate limit allows this call again in ") {
		t.Errorf("second members: stderr %q, want it to say it waits", stderr)
	}

	slow := coordinator("0.001") // a call again in 1000 s, past the CLI's 30 s
	mustRunCLI(t, slow...)
	_, stderr, err = runCLI(t, t.Context(), slow...)
	if err == nil || !strings.Contains(err.Error(), "rate limit") || strings.Contains(stderr, "waiting") {
		t.Errorf("members past a long limit: got %v, stderr %q; want the refusal at once, without waiting", err, stderr)
	}
}
