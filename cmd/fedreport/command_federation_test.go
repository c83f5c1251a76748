package main

import (
	"encoding/csv"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// federation is a two-level federation run through the root command: FR's
// node, holding 157 arrests in January 2020, is the one member of
// coordinator eu, which answers as member EU of coordinator main.
type federation struct {
	top, eu []string // the operator's flags for coordinator main and for eu
}

func euUnderMain(t *testing.T) federation {
	t.Helper()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"},
		[]string{"--role", "node", "--member", "EU"}, []string{"--role", "coordinator", "--name", "eu"},
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	tlsFlags := func(name string) []string {
		return []string{"--cacert", p("ca.crt"), "--cert", p(name + ".crt"), "--key", p(name + ".key")}
	}
	fr, sock := freeAddr(t), filepath.Join(dir, "fr.sock")
	serveCLI(t, pkiDir, fr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
		append([]string{"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", fr, "--admin-socket", sock,
			"--min-cell-count", "3"}, tlsFlags("node-FR")...)...)
	mustRunCLI(t, "ingest", "--node", "unix://"+sock,
		writeFile(t, "fr.csv", "record_id,metric,date,quantity\nFR-1,arrests,2020-01-14,150\nFR-2,arrests,2020-01-20,5\nFR-3,arrests,2020-01-21,2\n"))

	eu, euMember := freeAddr(t), freeAddr(t)
	serveCLI(t, pkiDir, eu, identity.Operator("isa", "alice"), identity.Coordinator("isa", "eu"),
		append([]string{"coordinator", "--data", filepath.Join(dir, "eu.db"), "--listen", eu, "--member", "FR=" + fr, "--member-timeout", "5s",
			"--member-code", "EU", "--member-listen", euMember, "--member-cert", p("node-EU.crt"), "--member-key", p("node-EU.key")},
			tlsFlags("coordinator-eu")...)...)
	top := freeAddr(t)
	serveCLI(t, pkiDir, top, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		append([]string{"coordinator", "--data", filepath.Join(dir, "main.db"), "--listen", top, "--member", "EU=" + euMember, "--member-timeout", "10s"},
			tlsFlags("coordinator-main")...)...)
	return federation{
		top: append([]string{"--coordinator", top}, tlsFlags("operator-alice")...),
		eu:  append([]string{"--coordinator", eu}, tlsFlags("operator-alice")...),
	}
}

// rollupIDIn returns the id of the rollup a table names first.
func rollupIDIn(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`rollup (r\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rollup id in\n%s", out)
	}
	return m[1]
}

// TestRollupsShowNamesTheCallersRollup runs a rollup at coordinator main
// and lists and shows, at eu, the rollup eu ran to answer it: the list and
// the table say for which of main's rollups, and the JSON carries its id;
// a rollup started at main itself names none.
func TestRollupsShowNamesTheCallersRollup(t *testing.T) {
	t.Parallel()
	f := euUnderMain(t)
	out := mustRunCLI(t, append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-01-31", "--metrics", "arrests"}, f.top...)...)
	topID := rollupIDIn(t, out)
	if !strings.Contains(out, "requested by spiffe://isa/operator/alice  took ") {
		t.Errorf("main's own rollup: want it requested by alice for no caller's rollup:\n%s", out)
	}

	euOut := mustRunCLI(t, append([]string{"rollups", "--limit", "1"}, f.eu...)...)
	euID := regexp.MustCompile(`(?m)^(r\d+)\s`).FindStringSubmatch(euOut)
	if euID == nil {
		t.Fatalf("no rollup listed at eu:\n%s", euOut)
	}
	if want := " spiffe://isa/coordinator/main (its rollup " + topID + ") "; !strings.Contains(euOut, want) {
		t.Errorf("rollups at eu: want the requester and its rollup, %q, in\n%s", want, euOut)
	}
	show := append([]string{"rollups", "show", euID[1]}, f.eu...)
	want := "requested by spiffe://isa/coordinator/main for coordinator/main's rollup " + topID + "  took "
	if out := mustRunCLI(t, show...); !strings.Contains(out, want) {
		t.Errorf("rollups show %s at eu: want %q in\n%s", euID[1], want, out)
	}
	var resp fedreportv1.GetRollupResponse
	if err := protojson.Unmarshal([]byte(mustRunCLI(t, append(show, "-o", "json")...)), &resp); err != nil {
		t.Fatal(err)
	}
	if got := resp.GetRollup().GetCallerRollupId(); got != topID {
		t.Errorf("rollups show %s -o json at eu: got caller_rollup_id %q, want %q", euID[1], got, topID)
	}
}

// TestRollupNamesTheRegionalRollupThatAnswered runs a rollup at coordinator
// main and shows it again: EU's line says which of eu's rollups answered,
// as eu's own history lists it, and the JSON carries its id.
func TestRollupNamesTheRegionalRollupThatAnswered(t *testing.T) {
	t.Parallel()
	f := euUnderMain(t)
	out := mustRunCLI(t, append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-01-31", "--metrics", "arrests"}, f.top...)...)
	topID := rollupIDIn(t, out)
	euOut := mustRunCLI(t, append([]string{"rollups", "--limit", "1"}, f.eu...)...)
	euID := regexp.MustCompile(`(?m)^(r\d+)\s`).FindStringSubmatch(euOut)
	if euID == nil {
		t.Fatalf("no rollup listed at eu:\n%s", euOut)
	}
	line := regexp.MustCompile(`(?m)^EU\s+ok\s+157\s+1\s+\S+\s+\(EU's rollup ` + euID[1] + `\)$`)
	if !line.MatchString(out) {
		t.Errorf("rollup at main: want EU's line to end (EU's rollup %s):\n%s", euID[1], out)
	}
	show := append([]string{"rollups", "show", topID}, f.top...)
	if out := mustRunCLI(t, show...); !line.MatchString(out) {
		t.Errorf("rollups show %s at main: want EU's line to end (EU's rollup %s):\n%s", topID, euID[1], out)
	}
	var resp fedreportv1.GetRollupResponse
	if err := protojson.Unmarshal([]byte(mustRunCLI(t, append(show, "-o", "json")...)), &resp); err != nil {
		t.Fatal(err)
	}
	if got := resp.GetRollup().GetMembers()[0].GetMemberRollupId(); got != euID[1] {
		t.Errorf("rollups show %s -o json at main: got EU's member_rollup_id %q, want %q", topID, got, euID[1])
	}
}

// TestMembersSaysWhichMemberIsACoordinator lists the members of coordinator
// main, whose member EU is coordinator eu, and of eu, whose member FR is a
// node: the table shows the kind beside the code, the JSON carries it,
// and the CSV adds it as its last column, the others as they were.
func TestMembersSaysWhichMemberIsACoordinator(t *testing.T) {
	t.Parallel()
	f := euUnderMain(t)
	members := append([]string{"members"}, f.top...)
	if out := mustRunCLI(t, members...); !regexp.MustCompile(`(?m)^MEMBER\s+KIND\s+ADDRESS\s.*\n^EU\s+coordinator\s+\S+\s+true\s`).MatchString(out) {
		t.Errorf("members at main: want EU's kind coordinator beside its code:\n%s", out)
	}
	if out := mustRunCLI(t, append([]string{"members"}, f.eu...)...); !regexp.MustCompile(`(?m)^FR\s+node\s+\S+\s+true\s`).MatchString(out) {
		t.Errorf("members at eu: want FR's kind node beside its code:\n%s", out)
	}
	var resp fedreportv1.ListMembersResponse
	if err := protojson.Unmarshal([]byte(mustRunCLI(t, append(members, "-o", "json")...)), &resp); err != nil {
		t.Fatal(err)
	}
	if got := resp.GetMembers()[0].GetKind(); got != "coordinator" {
		t.Errorf("members -o json at main: got EU's kind %q, want coordinator", got)
	}
	rows, err := csv.NewReader(strings.NewReader(mustRunCLI(t, append(members, "-o", "csv")...))).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("members -o csv at main: got %q (%v), want the header and EU's row", rows, err)
	}
	was := []string{"member", "address", "reachable", "last_contact", "data_version", "version", "k", "tables", "periods", "last_error"}
	if header, eu := rows[0], rows[1]; !slices.Equal(header, append(was, "kind")) || eu[0] != "EU" || eu[len(eu)-1] != "coordinator" {
		t.Errorf("members -o csv at main: got %q, want the columns as before and kind last, EU's coordinator", rows)
	}
}
