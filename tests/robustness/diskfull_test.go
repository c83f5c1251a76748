package robustness

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// smallDisk mounts a tmpfs of size bytes for the test, or skips the test
// where this machine does not allow mounting (not root, no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); the disk-full test needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

var nodeServingRE = regexp.MustCompile(`msg="node serving".* listen=(\S+)`)

func TestDiskFullDuringIngest(t *testing.T) {
	t.Parallel()
	disk := smallDisk(t, "3m")
	f := newFederation(t, identity.Node("isa", "FR"), identity.MemberAdmin("isa", "FR", "ops"))
	cert, key := f.files(identity.Node("isa", "FR"))
	db := filepath.Join(disk, "fr.db")
	sock := filepath.Join(t.TempDir(), "fr.sock")
	n := start(t, "node", "--member", "FR", "--data", db, "--listen", "127.0.0.1:0", "--admin-socket", sock,
		"--cacert", f.ca, "--cert", cert, "--key", key)
	addr := n.waitLog(t, nodeServingRE, 30*time.Second)
	admin := "unix://" + sock

	small := filepath.Join(t.TempDir(), "small.csv")
	big := filepath.Join(t.TempDir(), "big.csv")
	gen(t, small, "1000", "1")
	gen(t, big, "200000", "2")
	if out, err := run(t, t.Context(), "ingest", "--node", admin, small); err != nil {
		t.Fatalf("first ingest: %v\n%s", err, out)
	}

	out, err := run(t, t.Context(), "ingest", "--node", admin, big)
	if err == nil {
		t.Fatalf("an ingest larger than the disk succeeded:\n%s", out)
	}
	if !strings.Contains(out, "space") && !strings.Contains(out, "disk") {
		t.Errorf("the error does not say the disk is full:\n%s", out)
	}

	// The node still answers aggregates over mTLS, with the first stream's
	// totals: each answer's disclosure log entry still finds room in the
	// full disk's file.
	want := streamTotals(t, small)
	for range 3 {
		if got := nodeTotals(t, f, addr); !sameTotals(got, want) {
			t.Fatalf("aggregate after a full disk: got %v, want the first stream's %v\nnode log:\n%s", got, want, n.output())
		}
	}

	// The node still serves, and holds exactly the first stream.
	audit, err := run(t, t.Context(), "audit", "--node", admin)
	if err != nil {
		t.Fatalf("audit after a full disk: %v\n%s\nnode log:\n%s", err, audit, n.output())
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.wait(t, 20*time.Second); err != nil {
		t.Errorf("node exit after SIGTERM: %v\n%s", err, n.output())
	}
	report, err := run(t, t.Context(), "verify", "--data", db)
	if err != nil {
		t.Fatalf("verify after a full disk: %v\n%s", err, report)
	}
	if !strings.Contains(report, " 1000 records") {
		t.Errorf("got %q, want exactly the first stream's 1000 records\nnode log:\n%s", report, n.output())
	}
}

// gen writes n synthetic records of FR to path with fedreport gen.
func gen(t *testing.T, path, n, seed string) {
	t.Helper()
	out, err := exec.Command(binary, "gen", "--member", "FR", "--records", n, "--seed", seed).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
