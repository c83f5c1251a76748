package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestBackupRestoresToTheSameTotals backs up a running node (real mTLS,
// real admin socket) with fedreport backup, verifies the copy, starts a
// second node on the copy, and runs the same rollup over each: the totals
// are the same. A second backup to the same file is refused.
func TestBackupRestoresToTheSameTotals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"},
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	nodeTLS := []string{"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key")}
	startNode := func(data, sock string) string {
		addr := freeAddr(t)
		serveCLI(t, pkiDir, addr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
			append([]string{"node", "--member", "FR", "--data", data, "--listen", addr, "--admin-socket", sock}, nodeTLS...)...)
		return addr
	}
	rollupTotals := func(nodeAddr, db string) string {
		addr := freeAddr(t)
		serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
			"coordinator", "--data", db, "--listen", addr, "--member", "FR="+nodeAddr,
			"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
		out := mustRunCLI(t, "rollup", "--coordinator", addr, "--from", "2020-01-01", "--to", "2020-09-30", "--by", "offence", "-o", "json",
			"--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key"))
		var resp fedreportv1.StartRollupResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetRollup().GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || len(resp.GetRollup().GetTotals()) == 0 {
			t.Fatalf("rollup: got %v, want a complete one with totals", resp.GetRollup())
		}
		b, _ := protojson.Marshal(&fedreportv1.Rollup{Totals: resp.GetRollup().GetTotals()})
		return string(b)
	}

	liveSock := filepath.Join(dir, "fr.sock")
	live := startNode(filepath.Join(dir, "fr.db"), liveSock)
	mustRunCLI(t, "ingest", "--node", "unix://"+liveSock, writeFile(t, "fr.csv", mustRunCLI(t, "gen", "--member", "FR", "--records", "3000", "--seed", "1")))
	want := rollupTotals(live, filepath.Join(dir, "coord-live.db"))

	copyPath := filepath.Join(dir, "backup", "fr-copy.db")
	if err := os.Mkdir(filepath.Dir(copyPath), 0o700); err != nil {
		t.Fatal(err)
	}
	out := mustRunCLI(t, "backup", "--node", "unix://"+liveSock, copyPath)
	if !strings.HasPrefix(out, "backed up member FR's node to "+copyPath+": ") || !strings.Contains(out, "verified (3000 records)") {
		t.Errorf("backup: got %q", out)
	}
	if out := mustRunCLI(t, "verify", "--data", copyPath); !strings.Contains(out, "3000 records") {
		t.Errorf("verify of the copy: got %q", out)
	}
	if _, _, err := runCLI(t, t.Context(), "backup", "--node", "unix://"+liveSock, copyPath); err == nil || !strings.Contains(err.Error(), "exists; give backup a new file") {
		t.Errorf("backup over an existing file: got %v, want a refusal", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(copyPath), ".*partial*")); len(left) != 0 {
		t.Errorf("backup left partial files: %v", left)
	}

	restored := startNode(copyPath, filepath.Join(dir, "fr-copy.sock"))
	if got := rollupTotals(restored, filepath.Join(dir, "coord-restored.db")); got != want {
		t.Errorf("totals of the node started on the copy:\n got %s\nwant %s", got, want)
	}
}
