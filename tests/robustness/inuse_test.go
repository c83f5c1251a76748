package robustness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// TestADataFileInUseNamesTheFileAndItsProcess runs a real coordinator, then
// a node, a second coordinator and verify on its data file: each is told
// the file, and that a coordinator process (by its id) holds it, rather
// than a guess at what kind of process it is.
func TestADataFileInUseNamesTheFileAndItsProcess(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Coordinator("isa", "main"), identity.Node("isa", "FR"), identity.Operator("isa", "op"))
	db := filepath.Join(t.TempDir(), "coord.db")
	p, _ := startCoordinator(t, f, db, "127.0.0.1:1")
	want := fmt.Sprintf("data file is in use: %s by process %d (fedreport coordinator)", db, p.cmd.Process.Pid)

	nodeCert, nodeKey := f.files(identity.Node("isa", "FR"))
	coordCert, coordKey := f.files(identity.Coordinator("isa", "main"))
	for _, args := range [][]string{
		{"node", "--member", "FR", "--data", db, "--listen", "127.0.0.1:0", "--cacert", f.ca, "--cert", nodeCert, "--key", nodeKey},
		{"coordinator", "--data", db, "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:1", "--cacert", f.ca, "--cert", coordCert, "--key", coordKey},
		{"verify", "--data", db},
	} {
		out, err := run(t, callCtx(t), args...)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("fedreport %s on a running coordinator's file: got %v:\n%s\nwant the output to contain %q", args[0], err, out, want)
		}
		if strings.Contains(out, "already running") {
			t.Errorf("fedreport %s: the output guesses the kind of process:\n%s", args[0], out)
		}
	}
}
