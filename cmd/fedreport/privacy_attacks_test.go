package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The attacks of issue 19, each tried through the real CLI against a real
// node and coordinator, as an operator with nothing but allowed rollups would.

// marchArrests is FR's data: 34 arrests in March 2020 (20 grooming, 12
// sextortion, 2 live streaming) and 60 more over January and February.
func marchArrests() string {
	var b strings.Builder
	b.WriteString("record_id,metric,date,offence,channel,quantity\n")
	n := 0
	add := func(count int, date, offence string) {
		for range count {
			n++
			fmt.Fprintf(&b, "FR-%d,arrests,%s,%s,app,1\n", n, date, offence)
		}
	}
	add(20, "2020-03-10", "grooming")
	add(12, "2020-03-31", "sextortion")
	add(2, "2020-03-31", "live_streaming")
	add(30, "2020-01-15", "grooming")
	add(30, "2020-02-15", "sextortion")
	return b.String()
}

// frFederation starts FR's node (k = 5) holding data, and a coordinator over
// it; it returns the operator's client flags and FR's admin socket.
func frFederation(t *testing.T, data string) (client []string, sock string) {
	t.Helper()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"},
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	fr, sock := freeAddr(t), filepath.Join(dir, "fr.sock")
	serveCLI(t, pkiDir, fr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
		"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", fr, "--admin-socket", sock,
		"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"))
	mustRunCLI(t, "ingest", "--node", "unix://"+sock, writeFile(t, "fr.csv", data))
	addr := freeAddr(t)
	serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		"coordinator", "--data", filepath.Join(dir, "coord.db"), "--listen", addr, "--member", "FR="+fr,
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
	return []string{"--coordinator", addr, "--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key")}, sock
}

// rollupJSON runs a rollup and returns it.
func rollupJSON(t *testing.T, client []string, args ...string) *fedreportv1.Rollup {
	t.Helper()
	out := mustRunCLI(t, append(append([]string{"rollup", "-o", "json"}, args...), client...)...)
	var resp fedreportv1.StartRollupResponse
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("rollup %v -o json: %v\n%s", args, err, out)
	}
	return resp.GetRollup()
}

func TestAMonthTotalMinusTheExactOffencesGivesNoWithheldOffence(t *testing.T) {
	t.Parallel()
	client, _ := frFederation(t, marchArrests())
	total := rollupJSON(t, client, "--from", "2020-03-01", "--to", "2020-03-31", "--metrics", "arrests").GetTotals()[0]
	offences := rollupJSON(t, client, "--from", "2020-03-01", "--to", "2020-03-31", "--metrics", "arrests", "--by", "offence").GetTotals()
	var exact uint64
	var withheld []string
	for _, c := range offences {
		if c.GetSuppressedCells() == 0 {
			exact += c.GetCount()
		} else {
			withheld = append(withheld, c.GetOffence())
		}
	}
	if total.GetSuppressedCells() == 0 && len(withheld) == 1 {
		t.Errorf("March total %d minus the exact offences %d gives %s exactly", total.GetCount(), exact, withheld[0])
	}
	for _, c := range offences {
		if c.GetOffence() == "live_streaming" && c.GetSuppressedCells() == 0 {
			t.Errorf("live_streaming (2 records) published as %d", c.GetCount())
		}
	}
}

func TestADayCannotBeDifferencedOutOfTwoWindows(t *testing.T) {
	t.Parallel()
	client, _ := frFederation(t, marchArrests())
	rollupJSON(t, client, "--from", "2020-01-01", "--to", "2020-03-31", "--metrics", "arrests")
	_, _, err := runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-03-30", "--metrics", "arrests"}, client...)...)
	if err == nil || !strings.Contains(err.Error(), "PERIOD_NOT_ALIGNED") || !strings.Contains(err.Error(), "nearest allowed: 2020-01-01..2020-03-31") {
		t.Errorf("the window ending 30 March: got %v, want PERIOD_NOT_ALIGNED naming 2020-01-01..2020-03-31", err)
	}
	_, _, err = runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-03-31", "--to", "2020-03-31", "--metrics", "arrests", "--by", "offence,channel"}, client...)...)
	if err == nil {
		t.Errorf("one day by offence and channel: got nil error, want a refusal")
	}
}

func TestTheSameRollupBeforeAndAfterASmallIngestDoesNotShowTheBatch(t *testing.T) {
	t.Parallel()
	client, sock := frFederation(t, marchArrests())
	before := rollupJSON(t, client, "--from", "2020-01-01", "--to", "2020-03-31", "--metrics", "arrests").GetTotals()[0]
	if before.GetSuppressedCells() != 0 || before.GetCount() != 94 {
		t.Fatalf("before: got %v, want exactly 94", before)
	}
	mustRunCLI(t, "ingest", "--node", "unix://"+sock,
		writeFile(t, "two.csv", "record_id,metric,date,offence\nNEW-1,arrests,2020-02-03,grooming\nNEW-2,arrests,2020-02-04,grooming\n"))
	after := rollupJSON(t, client, "--from", "2020-01-01", "--to", "2020-03-31", "--metrics", "arrests").GetTotals()[0]
	if after.GetSuppressedCells() == 0 && !after.GetPending() {
		t.Errorf("after an ingest of 2: got %d exactly, want the batch hidden", after.GetCount())
	}
	if !after.GetPending() || after.GetCount() != 94 {
		t.Errorf("after an ingest of 2: got %v, want 94 held, pending", after)
	}
	if after.GetLowerBound() > 96 || after.GetUpperBound() < 96 {
		t.Errorf("after an ingest of 2: bounds [%d, %d] do not hold 96", after.GetLowerBound(), after.GetUpperBound())
	}
	out := mustRunCLI(t, append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-03-31", "--metrics", "arrests"}, client...)...)
	if !regexp.MustCompile(`(?m)^TOTAL\s+94\*`).MatchString(out) || !strings.Contains(out, "*") {
		t.Errorf("the table: want the held total marked 94*, with a legend:\n%s", out)
	}
}

func TestOneRecordOfAnyQuantityIsWithheld(t *testing.T) {
	t.Parallel()
	client, _ := frFederation(t, marchArrests()+"BIG-1,arrests,2020-04-02,grooming,app,11\n")
	c := rollupJSON(t, client, "--from", "2020-04-01", "--to", "2020-04-30", "--metrics", "arrests").GetTotals()[0]
	if c.GetSuppressedCells() == 0 {
		t.Errorf("April, one record of quantity 11: published as %d, want it withheld", c.GetCount())
	}
}

func TestANodeRefusesAKThatBoundsWouldPin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"), []string{"--role", "node", "--member", "FR"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	_, _, err := runCLI(t, t.Context(), "node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", freeAddr(t),
		"--min-cell-count", "2", "--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"))
	if err == nil || !strings.Contains(err.Error(), "min_cell_count: is 2; give 3 or more") {
		t.Errorf("node --min-cell-count 2: got %v, want a refusal naming min_cell_count", err)
	}
}
