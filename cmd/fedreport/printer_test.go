package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestRollupTableShowsNoCountItDoesNotHold prints rollups as the coordinator
// stores them when they hold no counts: a failed one keeps its ok members
// but not their cells, an interrupted one cut off by a restart keeps no
// members and no finish time, a running one has neither yet. None of them
// may show a 0 for a count, a duration, or a member table of 0/0.
func TestRollupTableShowsNoCountItDoesNotHold(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}
	ok := func(member string) *fedreportv1.MemberResult {
		return &fedreportv1.MemberResult{Member: member, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK, DataVersion: 4, Latency: durationpb.New(3 * time.Millisecond)}
	}
	failed := &fedreportv1.Rollup{Id: "r00000001", Spec: spec, RequestedBy: "spiffe://isa/operator/alice", State: fedreportv1.RollupState_ROLLUP_STATE_FAILED,
		StartedAt: timestamppb.New(started), FinishedAt: timestamppb.New(started.Add(time.Second)),
		FailureReason: "only 2 of 3 members answered correctly", MissingMembers: []string{"GB"},
		Members: []*fedreportv1.MemberResult{ok("FR"), ok("IT"),
			{Member: "GB", Status: fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, Reason: "connection refused", Latency: durationpb.New(time.Second)}}}
	interrupted := &fedreportv1.Rollup{Id: "r00000002", Spec: spec, RequestedBy: "spiffe://isa/operator/alice", State: fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED,
		StartedAt: timestamppb.New(started), FailureReason: "coordinator restarted while the rollup ran"}
	running := &fedreportv1.Rollup{Id: "r00000003", Spec: spec, RequestedBy: "spiffe://isa/operator/alice", State: fedreportv1.RollupState_ROLLUP_STATE_RUNNING, StartedAt: timestamppb.New(started)}

	for _, tc := range []struct {
		name      string
		r         *fedreportv1.Rollup
		want      []string
		wantLines []string // regular expressions, each matching a whole line
	}{
		{"a failed rollup", failed, []string{"took 1s", "FAILED: only 2 of 3"},
			[]string{`FR\s+ok\s+-\s+4\s+3ms`, `IT\s+ok\s+-\s+4\s+3ms`, `GB\s+unreachable\s+-\s+-\s+1s`}},
		{"a rollup interrupted by a restart", interrupted,
			[]string{"started 2026-11-27T10:00:00Z, did not finish", "no member results stored", "INTERRUPTED: coordinator restarted"}, nil},
		{"a running rollup", running, []string{"started 2026-11-27T10:00:00Z, not finished yet", "no member results yet"}, nil},
	} {
		var b bytes.Buffer
		if err := printRollupTable(&b, tc.r, ""); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s: want %q in:\n%s", tc.name, want, out)
			}
		}
		for _, line := range tc.wantLines {
			if !regexp.MustCompile(`(?m)^` + line + `\s*$`).MatchString(out) {
				t.Errorf("%s: want a line %s in:\n%s", tc.name, line, out)
			}
		}
		for _, bad := range []string{"TOTAL", " 0 ", "took -"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: got %q in:\n%s", tc.name, bad, out)
			}
		}
		if len(tc.r.GetMembers()) == 0 && strings.Contains(out, "MEMBER ") {
			t.Errorf("%s: got a member table without members:\n%s", tc.name, out)
		}
	}

	var b bytes.Buffer
	if err := printRollupList(&b, "table", &fedreportv1.ListRollupsResponse{Rollups: []*fedreportv1.Rollup{running, interrupted, failed}}, nextPageHint(defaultRollupsLimit, "")); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`r00000003\s+running\s+.*\s+-\s+\S+\s+2026`, `r00000002\s+interrupted\s+.*\s+-\s+\S+\s+2026`, `r00000001\s+failed\s+.*\s+2/3\s+\S+\s+2026`} {
		if !regexp.MustCompile(`(?m)^` + line).MatchString(b.String()) {
			t.Errorf("rollups: want a line %s in:\n%s", line, b.String())
		}
	}
}
