package main

import (
	"strings"
	"testing"
)

// TestGenSaysWhichDayDoesNotExist gives gen a date of the right form for a
// day the calendar does not have: it is told so, not that the form is wrong.
func TestGenSaysWhichDayDoesNotExist(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "2021-02-29"}, `--from "2021-02-29" does not exist (2021-02 has 28 days)`},
		{[]string{"--to", "2020-09-31"}, `--to "2020-09-31" does not exist (2020-09 has 30 days)`},
		{[]string{"--from", "2020-1-1"}, `--from "2020-1-1" is not a date (want YYYY-MM-DD)`},
		{[]string{"--from", "2020-09-30", "--to", "2020-01-01"}, `--to "2020-01-01" is before --from 2020-09-30 (want --from <= --to)`},
	} {
		_, _, err := runCLI(t, t.Context(), append([]string{"gen", "--member", "FR", "--records", "1"}, tc.args...)...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("gen %v: got %v, want %s", tc.args, err, tc.want)
		}
	}
}

// TestGenRecordsOfTwoSeedsLoadSideBySide ingests gen --seed 7 and then
// gen --seed 8 into one node: the second adds its records to the first's
// instead of replacing them.
func TestGenRecordsOfTwoSeedsLoadSideBySide(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	for _, seed := range []string{"7", "8", "7"} {
		out := mustRunCLI(t, "gen", "--member", "FR", "--records", "50", "--seed", seed)
		mustRunCLI(t, "ingest", "--node", addr, writeFile(t, "gen-"+seed+".csv", out))
	}
	if st := stats(t, n); st.Records != 100 {
		t.Errorf("records after seeds 7, 8 and 7 again: got %d, want 100", st.Records)
	}
	out := mustRunCLI(t, "gen", "--member", "FR", "--records", "1", "--seed", "7")
	if !strings.Contains(out, "\nFR-s7-000000001,") {
		t.Errorf("gen --seed 7: got %q, want the id FR-s7-000000001", out)
	}
}
