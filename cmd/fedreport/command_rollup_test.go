package main

import (
	"encoding/csv"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// initPKI makes an alliance CA in pkiDir and issues a certificate for each
// set of `pki issue` flags, through the root command; it returns pkiDir.
func initPKI(t *testing.T, pkiDir string, issues ...[]string) string {
	t.Helper()
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	for _, issue := range issues {
		mustRunCLI(t, append([]string{"pki", "issue", "--dir", pkiDir}, issue...)...)
	}
	return pkiDir
}

// frAndDownGB runs through the root command FR's node, holding 157 arrests
// in January 2020, and returns a function that starts a coordinator over FR
// and GB, whose address no one listens on, with extra flags, and returns
// the operator's flags for it.
func frAndDownGB(t *testing.T, nodeArgs ...string) func(coordArgs ...string) []string {
	t.Helper()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"},
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	fr, sock := freeAddr(t), filepath.Join(dir, "fr.sock")
	serveCLI(t, pkiDir, fr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
		append([]string{"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", fr, "--admin-socket", sock, "--min-cell-count", "3",
			"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key")}, nodeArgs...)...)
	mustRunCLI(t, "ingest", "--node", "unix://"+sock,
		writeFile(t, "fr.csv", "record_id,metric,date,quantity\nFR-1,arrests,2020-01-14,150\nFR-2,arrests,2020-01-20,5\nFR-3,arrests,2020-01-21,2\n"))
	gb := freeAddr(t)
	n := 0
	return func(coordArgs ...string) []string {
		n++
		addr := freeAddr(t)
		serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
			append([]string{"coordinator", "--data", filepath.Join(dir, "coord"+strings.Repeat("x", n)+".db"), "--listen", addr,
				"--member", "FR=" + fr, "--member", "GB=" + gb, "--member-timeout", "5s",
				"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key")}, coordArgs...)...)
		return []string{"--coordinator", addr, "--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key")}
	}
}

// TestRollupExitCodeSaysWhatWasPrinted runs `fedreport rollup` with GB down:
// under require_all the rollup is failed, still printed, and exits 1 with
// the reason, FR's withheld count shown as "-" in every format and never
// as 0; without a quorum it is partial, prints FR's true count and exits 3,
// and so does its rerun.
func TestRollupExitCodeSaysWhatWasPrinted(t *testing.T) {
	t.Parallel()
	coordinator := frAndDownGB(t)
	rollup := []string{"rollup", "--from", "2020-01-01", "--to", "2020-01-31", "--metrics", "arrests"}

	failed := append(rollup, coordinator("--require-all")...)
	out, _, err := runCLI(t, t.Context(), failed...)
	if got := exitCode(err); got != 1 || !strings.Contains(err.Error(), "failed: only 1 of 2") {
		t.Errorf("failed rollup: got exit code %d (%v), want 1 and the quorum reason", got, err)
	}
	if !regexp.MustCompile(`(?m)^FR\s+ok\s+-\s+\d+\s`).MatchString(out) || strings.Contains(out, "TOTAL") {
		t.Errorf("failed rollup: want FR ok with its count shown as -, and no TOTAL row:\n%s", out)
	}
	out, _, _ = runCLI(t, t.Context(), append(failed, "-o", "json")...)
	var resp fedreportv1.StartRollupResponse
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("failed rollup -o json: %v\n%s", err, out)
	}
	if r := resp.GetRollup(); len(r.GetTotals()) != 0 || len(r.GetMembers()[0].GetCells()) != 0 {
		t.Errorf("failed rollup -o json: got totals %v and FR cells %v, want none", r.GetTotals(), r.GetMembers()[0].GetCells())
	}
	out, _, _ = runCLI(t, t.Context(), append(failed, "-o", "csv")...)
	if rows, err := csv.NewReader(strings.NewReader(out)).ReadAll(); err != nil || len(rows) != 2 || strings.Join(rows[1][1:], ",") != "failed,rollup,,,,,,,,,,,," {
		t.Errorf("failed rollup -o csv: got %q (%v), want the header and the rollup's state row, without a count", rows, err)
	}

	client := coordinator()
	partial := append(rollup, client...)
	out, _, err = runCLI(t, t.Context(), partial...)
	if got := exitCode(err); got != exitPartial || !strings.Contains(err.Error(), "partial: missing GB") {
		t.Errorf("partial rollup: got exit code %d (%v), want %d naming GB", got, err, exitPartial)
	}
	for _, row := range []string{`FR\s+ok\s+157\s`, `TOTAL\s+157\s`} {
		if !regexp.MustCompile(`(?m)^` + row).MatchString(out) {
			t.Errorf("partial rollup: want a row %s:\n%s", row, out)
		}
	}

	// A rerun as JSON keeps stdout one document and compares the members'
	// data versions on stderr.
	id := regexp.MustCompile(`rollup (r\d+)`).FindStringSubmatch(out)[1]
	out, stderr, err := runCLI(t, t.Context(), append([]string{"rollup", "--rerun", id, "-o", "json"}, client...)...)
	if err := protojson.Unmarshal([]byte(out), &fedreportv1.StartRollupResponse{}); err != nil {
		t.Errorf("rerun -o json: stdout is not a StartRollupResponse: %v\n%s", err, out)
	}
	for _, want := range []string{"rerun of " + id, "FR 1 unchanged", "GB unknown (before: unreachable, after: unreachable)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("rerun -o json: want %q on stderr:\n%s", want, stderr)
		}
	}
	if got := exitCode(err); got != exitPartial {
		t.Errorf("rerun of a partial rollup, still partial: got exit code %d (%v), want %d", got, err, exitPartial)
	}
}

// TestRollupSaysARefusedMembersStatusOnce runs `fedreport rollup` over a
// month FR's node answers only from February on, which it refuses: the line
// under the table gives FR's status and then the node's code and words, not
// "refused" twice.
func TestRollupSaysARefusedMembersStatusOnce(t *testing.T) {
	t.Parallel()
	coordinator := frAndDownGB(t, "--earliest-date", "2020-02-01")
	out, _, _ := runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-01-31", "--metrics", "arrests"}, coordinator()...)...)
	want := "  FR refused: FAILED_PRECONDITION: member FR's disclosure policy answers only from 2020-02-01 on"
	if !strings.Contains(out, want) || strings.Contains(out, "refused: refused") {
		t.Errorf("want a line %q, and no \"refused: refused\":\n%s", want, out)
	}
}

// TestRollupsShowExitsAsRollupDid shows a failed and a partial rollup again
// with `fedreport rollups show`: in every format it exits with the code
// `fedreport rollup` gave them, and the CSV of the failed one, which holds
// no cell, still says which rollup it is and that it failed.
func TestRollupsShowExitsAsRollupDid(t *testing.T) {
	t.Parallel()
	coordinator := frAndDownGB(t)
	rollup := []string{"rollup", "--from", "2020-01-01", "--to", "2020-01-31", "--metrics", "arrests"}
	idOf := func(out string) string {
		t.Helper()
		m := regexp.MustCompile(`rollup (r\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no rollup id in\n%s", out)
		}
		return m[1]
	}

	failing := coordinator("--require-all")
	out, _, _ := runCLI(t, t.Context(), append(rollup, failing...)...)
	failed := idOf(out)
	partialClient := coordinator()
	out, _, _ = runCLI(t, t.Context(), append(rollup, partialClient...)...)
	partial := idOf(out)

	for _, tc := range []struct {
		id     string
		client []string
		code   int
		cells  bool // whether the CSV has cell rows
	}{{failed, failing, 1, false}, {partial, partialClient, exitPartial, true}} {
		for _, format := range []string{"table", "json", "csv"} {
			out, _, err := runCLI(t, t.Context(), append([]string{"rollups", "show", tc.id, "-o", format}, tc.client...)...)
			if got := exitCode(err); got != tc.code {
				t.Errorf("rollups show %s -o %s: got exit code %d (%v), want %d", tc.id, format, got, err, tc.code)
			}
			if format != "csv" || tc.cells {
				continue
			}
			rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(rows) != 2 || rows[1][0] != tc.id || rows[1][1] != "failed" || rows[1][2] != "rollup" {
				t.Errorf("rollups show %s -o csv: got %q (%v), want the header and a row %s,failed,rollup", tc.id, rows, err, tc.id)
			}
		}
	}
}

// TestRollupIntoTheFutureIsRefusedOrNoted runs rollups whose window starts
// after today (refused before anything is asked) and one that ends after
// today (run, with a note on stderr that it counts only up to today).
func TestRollupIntoTheFutureIsRefusedOrNoted(t *testing.T) {
	t.Parallel()
	client := frAndDownGB(t)()
	today := time.Now().UTC()
	nextYear := time.Date(today.Year()+1, 12, 31, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	nextJan := time.Date(today.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)

	_, _, err := runCLI(t, t.Context(), append([]string{"rollup", "--from", nextJan, "--to", nextYear, "--metrics", "arrests"}, client...)...)
	if want := "--from " + nextJan + " is after today (" + today.Format(time.DateOnly) + ", UTC): no record can be dated then"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("rollup from next year: got %v, want %q", err, want)
	}
	_, stderr, _ := runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-01-01", "--to", nextYear, "--metrics", "arrests"}, client...)...)
	if want := "note: --to " + nextYear + " is after today (" + today.Format(time.DateOnly) + ", UTC): the rollup counts the records the members hold now, up to today"; !strings.Contains(stderr, want) {
		t.Errorf("rollup to next year: stderr %q, want it to contain %q", stderr, want)
	}
}
