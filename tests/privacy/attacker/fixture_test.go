package attacker

import (
	"math"
	"os"
	"testing"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// readLogFile reads a disclosure log saved by the privacy test
// (FEDREPORT_ATTACK_SAVE): a ListDisclosuresResponse in JSON.
func readLogFile(t *testing.T, path string) []*fedreportv1.DisclosureEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var resp fedreportv1.ListDisclosuresResponse
	if err := protojson.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.GetEntries()
}

// TestAttackReadsMaxUint64AsNoUpperBound is two entries of a node's real
// log (seed 1 of the privacy test, cut down to what still failed): cells
// suppressed or pending with upper_bound 18446744073709551615, the node's
// saturated "no bound". Read as a bound of 1.8e19, phase I's tableau blew
// up and lp.Simplex panicked ("subcolumns of A for supplied initial basic
// singular") instead of giving a range.
func TestAttackReadsMaxUint64AsNoUpperBound(t *testing.T) {
	t.Parallel()
	entries := readLogFile(t, "testdata/maxuint-upper-bounds.json")
	found, err := Attack(entries, 5, SideKnowledge{})
	if err != nil {
		t.Fatal(err)
	}
	if found.Targets == 0 || found.LPs == 0 {
		t.Errorf("got %d targets and %d LPs, want the log's suppressed cells ranged by LP", found.Targets, found.LPs)
	}
	if len(found.Pinned) > 0 {
		t.Errorf("got findings in a log that pins nothing:\n%s", found)
	}
	m, err := buildModel(entries, 5, SideKnowledge{}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.rows {
		if r.hi > 1e15 && !math.IsInf(r.hi, 1) {
			t.Errorf("%s: upper bound %g, want none", r.what, r.hi)
		}
	}
}
