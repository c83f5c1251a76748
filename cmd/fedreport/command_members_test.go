package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestMembersShowsUnknownAsDash runs `fedreport members` with GB down since
// the coordinator started: its kind, data version, software version, k and
// dimensions were never reported, and show as "-", not as 0; FR's do show.
func TestMembersShowsUnknownAsDash(t *testing.T) {
	t.Parallel()
	client := frAndDownGB(t)()
	out := mustRunCLI(t, append([]string{"members"}, client...)...)
	if !regexp.MustCompile(`(?m)^GB\s+-\s+\S+\s+false\s+-\s+-\s+-\s+-\s+-\s+-\s+\S`).MatchString(out) {
		t.Errorf("GB, never reached: want - for kind, false and - for last contact, data version, version, k, tables and periods:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^FR\s+node\s+\S+\s+true\s+\S+\s+1\s+\S+\s+3\s+offence;channel;victim_age\s+-\s`).MatchString(out) {
		t.Errorf("FR: want a node, reachable, data version 1, k 3, its tables and no named period:\n%s", out)
	}
	out = mustRunCLI(t, append([]string{"members", "-o", "csv"}, client...)...)
	if !strings.Contains(out, ",false,-,-,-,-,-,-,") {
		t.Errorf("members -o csv: want GB's unknowns as -:\n%s", out)
	}
}
