package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", dir)
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "node", "--member", "IT")
	tlsArgs := []string{"--cacert", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "node-IT.crt"), "--key", filepath.Join(dir, "node-IT.key")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown key in the config file", []string{"--config", writeFile(t, "node.yaml", "member: IT\nmin_cel_count: 3\n")}, `line 2: unknown key "min_cel_count"`},
		{"another member's certificate", append([]string{"--member", "FR", "--data", filepath.Join(dir, "fr.db")}, tlsArgs...), "a node of FR needs a certificate for spiffe://isa/node/FR"},
		{"an unknown dimension", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--allowed-dimensions", "month,colour"}, tlsArgs...), `"colour"`},
		{"no data file", []string{"--member", "IT"}, "--data"},
	} {
		_, _, err := runCLI(t, t.Context(), append([]string{"node"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
