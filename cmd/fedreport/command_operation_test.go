package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// keptDemo runs `fedreport demo --keep` until the test ends and returns
// its manifest once demo.json is written (after the demo's rollups).
func keptDemo(t *testing.T) demoManifest {
	m, _ := keptDemoOutput(t)
	return m
}

// keptDemoOutput is keptDemo that also returns what the demo prints.
func keptDemoOutput(t *testing.T) (demoManifest, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stdout := &lockedBuffer{}
	go func() {
		var stderr lockedBuffer
		err := run(ctx, []string{"demo", "--dir", dir, "--keep"}, strings.NewReader(""), stdout, &stderr)
		if err != nil {
			err = fmt.Errorf("%w; stderr: %s", err, stderr.String())
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	var m demoManifest
	deadline := time.After(90 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// The lines to try are printed, in one write, after demo.json.
		if b, err := os.ReadFile(filepath.Join(dir, "demo.json")); err == nil && json.Unmarshal(b, &m) == nil &&
			strings.Contains(stdout.String(), "The federation stays up") {
			return m, stdout
		}
		select {
		case err := <-done:
			t.Fatalf("demo stopped before writing demo.json: %v", err)
		case <-deadline:
			t.Fatal("demo.json did not appear within 90s")
		case <-tick.C:
		}
	}
}

// clientArgs are the CLI flags of role's identity at the demo's coordinator.
func (m demoManifest) clientArgs(role string) []string {
	id := m.Identities[role]
	return []string{"--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", id.Cert, "--key", id.Key}
}

// TestRollupOfAnOperationAndItsPhases: `rollup --operation isa-2020
// [--phase N|NAME]` takes its window from the coordinator's ListOperations,
// and gives the demo's published totals.
func TestRollupOfAnOperationAndItsPhases(t *testing.T) {
	t.Parallel()
	m, out := keptDemoOutput(t)
	for _, want := range []string{
		"by month, for the dashboard's charts: r00000004 (2020-01-01..2020-09-30), r00000005 (2020-06-01..2020-09-30)",
		"go run ./cmd/fedreport rollup --operation isa-2020 --phase 1",
		"go run ./cmd/fedreport ui ",
		"go run ./cmd/fedreport report --operation isa-2020 -o report.html",
		"FEDREPORT_CERT=" + m.Identities["analyst"].Cert,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo does not print %q:\n%s", want, out.String())
		}
	}
	for _, tc := range []struct {
		name     string
		args     []string
		from, to string
		arrests  uint64
	}{
		{"the whole operation", nil, "2020-01-01", "2020-09-30", 771},
		{"phase 1 by number", []string{"--phase", "1"}, "2020-01-01", "2020-05-30", 463},
		{"phase 2 by name", []string{"--phase", "phase 2 (extension)"}, "2020-06-01", "2020-09-30", 308},
	} {
		args := append(append([]string{"rollup", "--operation", "isa-2020", "-o", "json", "--metrics", "arrests"}, m.clientArgs("operator")...), tc.args...)
		out := mustRunCLI(t, args...)
		var resp fedreportv1.StartRollupResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, out)
		}
		r := resp.GetRollup()
		if r.GetSpec().GetFrom() != tc.from || r.GetSpec().GetTo() != tc.to || r.GetTotals()[0].GetCount() != tc.arrests {
			t.Errorf("%s: got %s..%s arrests %d, want %s..%s %d", tc.name, r.GetSpec().GetFrom(), r.GetSpec().GetTo(),
				r.GetTotals()[0].GetCount(), tc.from, tc.to, tc.arrests)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown operation", []string{"--operation", "nope"}, "no such operation; the coordinator names isa-2020"},
		{"an unknown phase", []string{"--operation", "isa-2020", "--phase", "3"}, `has no phase "3"; its phases are 1 (phase 1), 2 (phase 2 (extension))`},
		{"a window as well", []string{"--operation", "isa-2020", "--from", "2020-01-01"}, "drop --from and --to"},
		{"a phase alone", []string{"--phase", "1"}, "--phase needs --operation"},
	} {
		_, _, err := runCLI(t, t.Context(), append(append([]string{"rollup"}, m.clientArgs("operator")...), tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
