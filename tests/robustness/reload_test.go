package robustness

import (
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestCoordinatorReloadsItsMembersOnSIGHUP runs a coordinator process from
// a config file, rewrites the file (FR re-addressed, GB removed, IT added)
// and sends the process SIGHUP: it logs what changed, lists the new
// members, keeps serving, and a file that does not load changes nothing. A
// change of the file is also picked up without a signal.
func TestCoordinatorReloadsItsMembersOnSIGHUP(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Coordinator("isa", "main"), identity.Operator("isa", "op"))
	dir := t.TempDir()
	config := filepath.Join(dir, "coord.yaml")
	write := func(s string) {
		if err := os.WriteFile(config, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("members:\n  - {code: FR, address: 127.0.0.1:1}\n  - {code: GB, address: 127.0.0.1:3}\n")
	cert, key := f.files(identity.Coordinator("isa", "main"))
	p := start(t, "coordinator", "--config", config, "--data", filepath.Join(dir, "coord.db"), "--listen", "127.0.0.1:0",
		"--cacert", f.ca, "--cert", cert, "--key", key)
	addr := p.waitLog(t, servingRE, 30*time.Second)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ClientConfig(f.source(t, identity.Operator("isa", "op")), mtls.ExpectRole("isa", identity.RoleCoordinator)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := fedreportv1.NewCoordinatorServiceClient(conn)
	members := func() map[string]string {
		resp, err := c.ListMembers(callCtx(t), &fedreportv1.ListMembersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, m := range resp.GetMembers() {
			out[m.GetCode()] = m.GetAddress()
		}
		return out
	}

	write("members:\n  - {code: FR, address: 127.0.0.1:2}\n  - {code: IT, address: 127.0.0.1:4}\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, regexp.MustCompile(`msg="members reloaded" members=2 added=IT removed=GB readdressed=FR`), 30*time.Second)
	if got := members(); len(got) != 2 || got["FR"] != "127.0.0.1:2" || got["IT"] != "127.0.0.1:4" {
		t.Errorf("members after the reload: got %v, want FR at 127.0.0.1:2 and IT at 127.0.0.1:4", got)
	}

	write("members:\n  - {code: FR, address: nowhere}\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, regexp.MustCompile(`msg="members not reloaded; the previous ones stay"`), 30*time.Second)
	if got := members(); len(got) != 2 {
		t.Errorf("members after a reload of a bad file: got %v, want the 2 of before", got)
	}

	// A change of the file alone is reloaded too, without a signal.
	write("members:\n  - {code: FR, address: 127.0.0.1:2}\n  - {code: IT, address: 127.0.0.1:4}\n  - {code: ES, address: 127.0.0.1:5}\n")
	p.waitLog(t, regexp.MustCompile(`msg="members reloaded" members=3 added=ES removed="" readdressed=""`), 30*time.Second)
	if got := members(); len(got) != 3 || got["ES"] != "127.0.0.1:5" {
		t.Errorf("members after the file changed: got %v, want ES added", got)
	}
}
