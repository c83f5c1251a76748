package robustness

import (
	"bytes"
	byteorder "encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	"github.com/isa-alliance/fedreport/internal/identity"
)

// TestNodeRefusesDamagedFile makes a real data file, damages it the ways a
// disk or an operator can, and checks that the node refuses to start on a
// truncated file or damaged meta pages with a clear message (and so never
// serves counts from it), and that `fedreport verify` reports damage inside
// the pages, which the node does not walk at start.
func TestNodeRefusesDamagedFile(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Node("isa", "FR"))
	cert, key := f.files(identity.Node("isa", "FR"))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	sock := filepath.Join(dir, "fr.sock")
	nodeArgs := func(db string) []string {
		return []string{"node", "--member", "FR", "--data", db, "--listen", "127.0.0.1:0", "--cacert", f.ca, "--cert", cert, "--key", key}
	}
	n := start(t, append(nodeArgs(good), "--admin-socket", sock)...)
	n.waitLog(t, nodeServingRE, 30*time.Second)
	csv := filepath.Join(dir, "fr.csv")
	gen(t, csv, "20000", "1")
	if out, err := run(t, t.Context(), "ingest", "--node", "unix://"+sock, csv); err != nil {
		t.Fatalf("ingest: %v\n%s", err, out)
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.wait(t, 20*time.Second); err != nil {
		t.Fatalf("node exit: %v", err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		verify bool // found by fedreport verify, not at start
	}{
		// Half of the pages in use: bbolt's file may run past them.
		{"truncated to half", func(b []byte) []byte {
			m, err := boltcheck.ReadMeta(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			return b[:m.HWM/2*page]
		}, false},
		{"truncated to two pages", func(b []byte) []byte { return b[:2*page] }, false},
		{"pages overwritten", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			for i := 2 * page; i < len(b)/2; i++ {
				b[i] = byte(i*7 + 3)
			}
			return b
		}, true},
		// bbolt's own check follows the id out of its mapping and dies of
		// the fault.
		// Every page that looks like a branch (bbolt's layout): a free
		// page may look like one too, and damaging only that would leave
		// the file sound.
		{"a branch page's child id overwritten", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			n := 0
			for at := 2 * page; at+page <= len(b); at += page {
				flags, count := byteorder.LittleEndian.Uint16(b[at+8:]), byteorder.LittleEndian.Uint16(b[at+10:])
				if flags == 0x01 && count > 0 {
					byteorder.LittleEndian.PutUint64(b[at+16+8:], 0xDEADBEEF) // element 0's child page id
					n++
				}
			}
			if n == 0 {
				t.Fatal("no branch page in the file")
			}
			return b
		}, true},
		{"both meta pages overwritten", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			for i := range 2 * page {
				b[i] = 0xAB
			}
			return b
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "fr.db")
			if err := os.WriteFile(db, tc.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			args := nodeArgs(db)
			if tc.verify {
				args = []string{"verify", "--data", db}
			}
			cmd := exec.Command(binary, args...)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("the node started on a damaged file and kept running:\n%s", out)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("got %v, want exit status 1 (a refusal, not a crash):\n%s", err, out)
			}
			msg := string(out)
			if strings.Contains(msg, "node serving") || strings.Contains(msg, "goroutine ") {
				t.Errorf("the node served or crashed instead of refusing:\n%s", msg)
			}
			if !strings.Contains(msg, "restore it from a backup") {
				t.Errorf("the refusal does not say what to do:\n%s", msg)
			}
		})
	}
}
