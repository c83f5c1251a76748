package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientAddressesSayWhatToWrite gives client verbs addresses a user
// might type from the README: a socket path without unix://, a host without
// a port. Each is refused before any TLS file is needed, saying what to write.
func TestClientAddressesSayWhatToWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// An existing socket with no .sock suffix, named by a relative path.
	sock := filepath.Join(dir, "admin")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relSock, err := filepath.Rel(wd, sock)
	if err != nil {
		t.Fatal(err)
	}
	frSock, err := filepath.Abs("fr.sock")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a relative socket path as README passes to --admin-socket", []string{"audit", "--node", "fr.sock"},
			"--node fr.sock: write a socket path as unix://fr.sock (or unix://" + frSock + ")"},
		{"a relative path to an existing socket", []string{"audit", "--node", relSock},
			"--node " + relSock + ": write a socket path as unix://" + relSock},
		{"a node host without a port", []string{"audit", "--node", "127.0.0.1"},
			"--node 127.0.0.1: want host:port, with the port (the node's --listen address, e.g. 127.0.0.1:7443)"},
		{"a coordinator host without a port", []string{"rollups", "--coordinator", "localhost"},
			"--coordinator localhost: want host:port, with the port (the coordinator's --listen address, e.g. 127.0.0.1:7400)"},
	} {
		_, _, err := runCLI(t, t.Context(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestAFlagValueIsEchoedShort gives a verb a megabyte where a word belongs:
// the error quotes its start and its length, not the megabyte.
func TestAFlagValueIsEchoedShort(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	_, _, err := runCLI(t, t.Context(), "rollups", "--state", big, "--coordinator", "127.0.0.1:1")
	if err == nil || len(err.Error()) > 256 || !strings.Contains(err.Error(), "(1048576 bytes)") {
		t.Errorf("got an error of %d bytes (%.100s...), want under 256 bytes naming the length", len(fmt.Sprint(err)), fmt.Sprint(err))
	}
}
