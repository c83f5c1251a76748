package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/node"
)

// dataFilePKI issues what node FR and the coordinator need and returns the
// TLS flags of each.
func dataFilePKI(t *testing.T) (nodeTLS, coordTLS []string) {
	t.Helper()
	dir := t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", dir)
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "node", "--member", "FR")
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "coordinator", "--name", "main")
	ca := filepath.Join(dir, "ca.crt")
	return []string{"--cacert", ca, "--cert", filepath.Join(dir, "node-FR.crt"), "--key", filepath.Join(dir, "node-FR.key")},
		[]string{"--cacert", ca, "--cert", filepath.Join(dir, "coordinator-main.crt"), "--key", filepath.Join(dir, "coordinator-main.key")}
}

// openCoordinatorFile opens (creating it if missing) a coordinator's data
// file at path with the real coordinator; the caller closes it.
func openCoordinatorFile(t *testing.T, path string) *coordinator.Coordinator {
	t.Helper()
	c, err := coordinator.Open(coordinator.Config{
		DataPath:  path,
		Members:   []coordinator.Member{{Code: "FR", Address: "127.0.0.1:7443"}},
		MemberTLS: func(string) (*tls.Config, error) { return &tls.Config{}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startRefused runs fedreport args, which must fail before serving, and
// returns the error. A start that is not refused is stopped after a while.
func startRefused(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, _, err := runCLI(t, ctx, args...)
	if ctx.Err() != nil {
		t.Errorf("fedreport %s: started and served, want a refusal", strings.Join(args, " "))
	}
	return err
}

// TestServersRefuseEachOthersDataFiles starts a coordinator on a node's data
// file and a node on a coordinator's, both made by the real stores: each is
// refused with a message that says what the file is, and neither file
// changes by a byte.
func TestServersRefuseEachOthersDataFiles(t *testing.T) {
	t.Parallel()
	nodeTLS, coordTLS := dataFilePKI(t)
	dir := t.TempDir()

	nodeFile := filepath.Join(dir, "fr.db")
	st, err := node.OpenStore(nodeFile, node.StoreOptions{Member: "FR"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A node commits without writing its freelist (NoFreelistSync, see
	// node/store.go) and writes it only when it closes cleanly: a node
	// stopped by a crash leaves such a file, which a plain open for writing
	// would rewrite.
	crashedFile := filepath.Join(dir, "fr-crashed.db")
	copyFile(t, nodeFile, crashedFile)
	db, err := bolt.Open(crashedFile, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	coordFile := filepath.Join(dir, "coord.db")
	if err := openCoordinatorFile(t, coordFile).Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		file string
		args []string
		want string
	}{
		{"a coordinator on a node's file", nodeFile,
			append([]string{"coordinator", "--data", nodeFile, "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:7443"}, coordTLS...),
			`open store "` + nodeFile + `": it is the data file of member FR's node, not a coordinator's; give the coordinator a --data file of its own`},
		{"a coordinator on a crashed node's file", crashedFile,
			append([]string{"coordinator", "--data", crashedFile, "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:7443"}, coordTLS...),
			"it is the data file of member FR's node"},
		{"a node on a coordinator's file", coordFile,
			append([]string{"node", "--member", "FR", "--data", coordFile, "--listen", "127.0.0.1:0"}, nodeTLS...),
			"data file " + coordFile + " is a coordinator's data file, not a node's; give the node its own --data file"},
	} {
		before, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		err = startRefused(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
		after, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Errorf("%s: the refused file changed", tc.name)
		}
	}

	// Each file still opens as what it is.
	if st, err = node.OpenStore(nodeFile, node.StoreOptions{Member: "FR"}); err != nil {
		t.Errorf("node file after the refusal: %v", err)
	} else if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := openCoordinatorFile(t, coordFile).Close(); err != nil {
		t.Errorf("coordinator file after the refusal: %v", err)
	}
}

// copyFile copies the file at from to a new file at to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCoordinatorSaysItsFileIsInUse starts a second coordinator on a file a
// running one holds: it is told which file and which process (here the
// test's own; tests/robustness has one with a coordinator process).
func TestCoordinatorSaysItsFileIsInUse(t *testing.T) {
	t.Parallel()
	_, coordTLS := dataFilePKI(t)
	path := filepath.Join(t.TempDir(), "coord.db")
	c := openCoordinatorFile(t, path)
	defer c.Close()
	err := startRefused(t, append([]string{"coordinator", "--data", path, "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:7443"}, coordTLS...)...)
	if want := "data file is in use: " + path + " by this process; stop that process"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
	if !errors.Is(err, coordinator.ErrInUse) {
		t.Errorf("got %v, want coordinator.ErrInUse", err)
	}
}

// TestAPortInUseLeavesNoDataFile starts a node and a coordinator on a port
// another listener holds: each fails, and neither leaves a data file behind.
func TestAPortInUseLeavesNoDataFile(t *testing.T) {
	t.Parallel()
	nodeTLS, coordTLS := dataFilePKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	busy := lis.Addr().String()
	dir := t.TempDir()
	nodeFile, coordFile := filepath.Join(dir, "fr.db"), filepath.Join(dir, "coord.db")
	for _, args := range [][]string{
		append([]string{"node", "--member", "FR", "--data", nodeFile, "--listen", busy}, nodeTLS...),
		append([]string{"coordinator", "--data", coordFile, "--listen", busy, "--member", "FR=127.0.0.1:7443"}, coordTLS...),
	} {
		if err := startRefused(t, args...); err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("%s on a port in use: got %v, want an error saying so", args[0], err)
		}
	}
	for _, path := range []string{nodeFile, coordFile} {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after a failed start: got %v, want no file", path, err)
		}
	}
}

// TestAPathThatIsNoDataFileIsNotCalledDamaged gives node, coordinator and
// verify a directory and a CSV export as --data: each is told the path is
// not a data file, and nobody is sent to restore a backup of it.
func TestAPathThatIsNoDataFileIsNotCalledDamaged(t *testing.T) {
	t.Parallel()
	nodeTLS, coordTLS := dataFilePKI(t)
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "fr.csv")
	if err := os.WriteFile(csvFile, []byte("record_id,metric,date\nFR-1,arrests,2020-01-02\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func(path string) error
	}{
		{"node", func(path string) error {
			return startRefused(t, append([]string{"node", "--member", "FR", "--data", path, "--listen", "127.0.0.1:0"}, nodeTLS...)...)
		}},
		{"coordinator", func(path string) error {
			return startRefused(t, append([]string{"coordinator", "--data", path, "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:7443"}, coordTLS...)...)
		}},
		{"verify", func(path string) error {
			_, _, err := runCLI(t, t.Context(), "verify", "--data", path)
			return err
		}},
	} {
		for _, p := range []struct{ path, what string }{{dir, "is a directory"}, {csvFile, "is a text file"}} {
			err := tc.run(p.path)
			if err == nil || !strings.Contains(err.Error(), p.path+" "+p.what) || !strings.Contains(err.Error(), "not a fedreport data file") || strings.Contains(err.Error(), "backup") {
				t.Errorf("%s --data %s: got %v, want an error saying it %s, not a fedreport data file, without backup advice", tc.name, p.path, err, p.what)
			}
		}
	}
}
