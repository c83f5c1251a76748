package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// totalRow finds the TOTAL row printed after a section title.
func totalRow(t *testing.T, out, title string) []string {
	t.Helper()
	i := strings.Index(out, title)
	if i < 0 {
		t.Fatalf("output has no section %q:\n%s", title, out)
	}
	for _, line := range strings.Split(out[i:], "\n") {
		if strings.HasPrefix(line, "TOTAL") {
			return strings.Fields(line)[1:]
		}
	}
	t.Fatalf("section %q has no TOTAL row", title)
	return nil
}

func TestDemoPrintsThePublishedResults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := mustRunCLI(t, "demo", "--dir", dir)
	// Columns: arrests, victims_identified, sites_blocked, judicial_referrals, reports_received.
	whole := totalRow(t, out, "== whole operation ==")
	if got, want := whole[:3], []string{"771", "549", "580"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("whole operation totals: got %v, want %v", got, want)
	}
	// The phases add up to the whole operation, metric by metric.
	p1, p2 := totalRow(t, out, "== phase 1 =="), totalRow(t, out, "== phase 2 (extension) ==")
	for i := range whole {
		var a, b, w int
		for _, x := range []struct {
			s string
			p *int
		}{{p1[i], &a}, {p2[i], &b}, {whole[i], &w}} {
			if err := json.Unmarshal([]byte(x.s), x.p); err != nil {
				t.Fatalf("total %q is not an exact number: %v", x.s, err)
			}
		}
		if a+b != w {
			t.Errorf("column %d: phase 1 %d + phase 2 %d != whole %d", i, a, b, w)
		}
	}
	if n := strings.Count(out, "COMPLETE"); n != 3 {
		t.Errorf("got %d complete rollups, want 3:\n%s", n, out)
	}
	if regexp.MustCompile(`(?m)^\w\w\s+(unreachable|timeout|refused|invalid)`).MatchString(out) {
		t.Errorf("a member was not ok:\n%s", out)
	}
	// Every node's file is consistent after the demo stopped.
	for _, m := range demoMembers {
		mustRunCLI(t, "verify", "--data", filepath.Join(dir, "nodes", m+".db"))
	}
}

// TestDemoWithAnAdminSocketInUseLeavesNoDataFile runs the demo in a --dir
// where another process answers on the second node's admin socket: the
// demo is refused, saying so, and leaves no node's data file behind, not
// even the first node's, whose socket was free.
func TestDemoWithAnAdminSocketInUseLeavesNoDataFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "nodes"), 0o700); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(dir, "nodes", demoMembers[1]+".sock")
	lis, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, _, err = runCLI(t, t.Context(), "demo", "--dir", dir)
	if want := "demo node " + demoMembers[1] + ": node: admin socket " + busy + ": another process answers there"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("demo with %s in use: got %v, want an error containing %q", busy, err, want)
	}
	dbs, err := filepath.Glob(filepath.Join(dir, "nodes", "*.db"))
	if err != nil || len(dbs) != 0 {
		t.Errorf("data files after a failed demo: got %v (%v), want none", dbs, err)
	}
}

func TestKeptDemoServesClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := runCLI(t, ctx, "demo", "--dir", dir, "--keep")
		done <- err
	}()
	manifestPath := filepath.Join(dir, "demo.json")
	var m demoManifest
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(manifestPath); err == nil && json.Unmarshal(b, &m) == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo stopped before writing demo.json: %v", err)
		case <-deadline:
			t.Fatal("demo.json did not appear within 60s")
		case <-tick.C:
		}
	}
	if len(m.Nodes) != 9 || m.Coordinator == "" {
		t.Fatalf("manifest: got %d nodes and coordinator %q, want 9 and an address", len(m.Nodes), m.Coordinator)
	}
	for _, key := range []string{"operator", "analyst", "member-admin-FR", "member-admin-AU"} {
		if _, ok := m.Identities[key]; !ok {
			t.Errorf("manifest has no identity %q", key)
		}
	}
	op := m.Identities["operator"]
	out := mustRunCLI(t, "rollup", "--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", op.Cert, "--key", op.Key,
		"--from", "2020-01-01", "--to", "2020-09-30", "-o", "json")
	var resp fedreportv1.StartRollupResponse
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("rollup -o json is not a StartRollupResponse: %v\n%s", err, out)
	}
	if got := resp.GetRollup().GetState(); got != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Errorf("got state %v, want complete", got)
	}
	want := map[fedreportv1.Metric]uint64{
		fedreportv1.Metric_METRIC_ARRESTS:            771,
		fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED: 549,
		fedreportv1.Metric_METRIC_SITES_BLOCKED:      580,
	}
	for _, c := range resp.GetRollup().GetTotals() {
		if w, ok := want[c.GetMetric()]; ok && (c.GetCount() != w || c.GetSuppressedCells() != 0) {
			t.Errorf("%v: got %d (suppressed %d), want exactly %d", c.GetMetric(), c.GetCount(), c.GetSuppressedCells(), w)
		}
	}

	// An analyst may read rollups but not start one.
	an := m.Identities["analyst"]
	if out := mustRunCLI(t, "rollups", "--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", an.Cert, "--key", an.Key); !strings.Contains(out, "complete") {
		t.Errorf("rollups as analyst: %s", out)
	}
	if out := mustRunCLI(t, "rollups", "--state", "partial", "--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", an.Cert, "--key", an.Key); strings.Contains(out, "complete") {
		t.Errorf("rollups --state partial lists complete rollups:\n%s", out)
	}
	_, _, err := runCLI(t, t.Context(), "rollup", "--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", an.Cert, "--key", an.Key,
		"--from", "2020-01-01", "--to", "2020-09-30")
	if want := "may not call /fedreport.v1.CoordinatorService/StartRollup; it needs an operator certificate"; err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "a role that may call this") {
		t.Errorf("rollup as analyst: got %v, want a permission error ending %q, and no hint that leaves the role open", err, want)
	}

	// A rerun after FR corrected a record says FR's data changed and no one else's.
	fr := m.Nodes[0]
	if fr.Member != "FR" {
		t.Fatalf("first node is %s, want FR", fr.Member)
	}
	correction := filepath.Join(t.TempDir(), "fix.csv")
	if err := os.WriteFile(correction, []byte("record_id,metric,date,quantity\nFR-2020-000001,arrests,2020-01-15,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRunCLI(t, "ingest", "--node", "unix://"+fr.AdminSocket, correction); !strings.Contains(out, "1 changed") {
		t.Errorf("correction: got %q, want one changed record", out)
	}
	out = mustRunCLI(t, "rollup", "--coordinator", m.Coordinator, "--cacert", m.CA, "--cert", op.Cert, "--key", op.Key,
		"--rerun", resp.GetRollup().GetId())
	for _, want := range []string{"rerun of " + resp.GetRollup().GetId(), "FR 1 -> 2 changed", "IT 1 unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("rerun output lacks %q:\n%s", want, out)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo --keep: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo --keep did not stop within 30s of cancellation")
	}
}
