package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestFanOutAsksEveryMemberEveryRound has a real coordinator child (this
// test binary, see TestMain) time both fan-outs against real members over
// mTLS: every warm-up and timed round of Aggregate reaches every member
// once, from the coordinator's identity (each member logs one entry per
// round, under the bench's rollup id), both processes' CPU is counted, and
// a member that cannot be reached fails the measurement instead of being
// timed.
func TestFanOutAsksEveryMemberEveryRound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mn, err := startMembers(ctx, p, t.TempDir(), 3, 20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mn.close(); err != nil {
			t.Error(err)
		}
	}()
	b := &bench{pki: p, dir: t.TempDir(), stderr: io.Discard}
	start := func(name string, members []coordinator.Member) *child {
		c, err := b.startCoordinator(ctx, name, filepath.Join(b.dir, name+".db"), members, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.stop(); err != nil {
				t.Error(err)
			}
		})
		return c
	}
	coord := start("coordinator-fan-out", mn.list)

	req := memberRequest(&fedreportv1.RollupSpec{From: periodFromString, To: periodToString})
	req.RollupId = fanOutRollupID
	agg, err := aggregateFanOut(req)
	if err != nil {
		t.Fatal(err)
	}
	const warmup, rounds = 2, 5
	got, err := b.fanOuts(ctx, coord, warmup, rounds, fanOutRequest{Call: healthCall}, agg)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{healthCall, aggregateCall} {
		f := got[i]
		if f.Call != want || f.Latency.Count != rounds || f.Latency.P50ms <= 0 || f.Latency.P99ms < f.Latency.P50ms || f.CPU.MembersMs <= 0 || f.CPU.CoordinatorMs <= 0 {
			t.Errorf("fan-out %d: %+v, want %s timed over %d rounds, with both processes' CPU", i, f, want, rounds)
		}
	}
	caller := identity.Coordinator(trustDomain, "coordinator-fan-out").String()
	for _, nd := range mn.nodes {
		entries, _, err := nd.Store().ListDisclosures(100, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != warmup+rounds {
			t.Errorf("member %s logged %d answers, want one per round: %d", nd.Store().Member(), len(entries), warmup+rounds)
		}
		for _, e := range entries {
			if e.GetRollupId() != fanOutRollupID || e.GetCaller() != caller {
				t.Errorf("member %s logged rollup %q for %s, want %q for %s", nd.Store().Member(), e.GetRollupId(), e.GetCaller(), fanOutRollupID, caller)
			}
		}
	}

	if _, err := coord.fanOut(ctx, fanOutRequest{Call: "Nope", Rounds: 1}); err == nil || !strings.Contains(err.Error(), `fan-out call "Nope": want`) {
		t.Errorf("unknown call: %v, want it refused by name", err)
	}
	gone := append([]coordinator.Member(nil), mn.list...)
	gone[1].Address = "127.0.0.1:1"
	if _, err := b.fanOuts(ctx, start("coordinator-member-down", gone), 0, 1, fanOutRequest{Call: healthCall}); err == nil ||
		!strings.Contains(err.Error(), "fan-out of Health/Check: 1 of 3 calls failed, the first: ") {
		t.Errorf("fan-out with a member down: %v, want the fan-out's error", err)
	}
}

// TestTmpfsRowsSayWhyTheStepDidNotRun checks the tmpfs step's rows: a step
// that could not run says why in one row, instead of rows of zeros; one
// that ran has its rollup rows and both fan-outs.
func TestTmpfsRowsSayWhyTheStepDidNotRun(t *testing.T) {
	t.Parallel()
	r := &Result{Steps: []string{"tmpfs"}}
	r.Rollup.Members = 200
	r.Rollup.Tmpfs.Skipped = "/dev/shm not found"
	rows := r.rows()
	if len(rows) != 1 || rows[0].Fedreport != "not run: /dev/shm not found" || !strings.Contains(rows[0].Measure, "rollup 200 members, files on tmpfs") {
		t.Errorf("skipped tmpfs step: rows %+v, want one that says why", rows)
	}

	r.Rollup.Tmpfs = TmpfsResult{FanOutHealth: FanOut{Call: healthCall}, FanOutAggregate: FanOut{Call: aggregateCall}}
	rows = r.rows()
	var measures []string
	for _, row := range rows {
		measures = append(measures, row.Measure)
	}
	got := strings.Join(measures, "\n")
	for _, want := range []string{"rollup 200 members, files on tmpfs", "rollup CPU on tmpfs", "members' disclosure log append",
		"Health/Check to 200 members at once", "CPU of that fan-out of Health/Check", "Aggregate to 200 members at once", "CPU of that fan-out of Aggregate"} {
		if !strings.Contains(got, want) {
			t.Errorf("tmpfs rows lack %q:\n%s", want, got)
		}
	}
	if len(rows) != 7 {
		t.Errorf("tmpfs step: %d rows, want 7:\n%s", len(rows), got)
	}
}
