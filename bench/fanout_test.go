package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/coordinator"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestFanOutAsksEveryMemberEveryRound runs both fan-outs against real
// members over mTLS: every warm-up and timed round of Aggregate reaches every
// member once (each logs one entry per round, under the bench's rollup id),
// and a member that cannot be reached fails the measurement instead of
// being timed.
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
	b := &bench{pki: p, stderr: io.Discard}
	req := memberRequest(&fedreportv1.RollupSpec{From: periodFromString, To: periodToString})
	req.RollupId = fanOutRollupID
	const warmup, rounds = 2, 5
	got, err := b.fanOuts(ctx, mn.list, warmup, rounds, namedCall{"Health/Check", healthCheck}, namedCall{"Aggregate", memberAggregate(req)})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"Health/Check", "Aggregate"} {
		f := got[i]
		if f.Call != want || f.Latency.Count != rounds || f.Latency.P50ms <= 0 || f.Latency.P99ms < f.Latency.P50ms || f.CPUMs <= 0 {
			t.Errorf("fan-out %d: %+v, want %s timed over %d rounds", i, f, want, rounds)
		}
	}
	for _, nd := range mn.nodes {
		entries, _, err := nd.Store().ListDisclosures(100, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != warmup+rounds {
			t.Errorf("member %s logged %d answers, want one per round: %d", nd.Store().Member(), len(entries), warmup+rounds)
		}
		for _, e := range entries {
			if e.GetRollupId() != fanOutRollupID || e.GetCaller() != benchCoordinator.String() {
				t.Errorf("member %s logged rollup %q for %s, want %q for %s", nd.Store().Member(), e.GetRollupId(), e.GetCaller(), fanOutRollupID, benchCoordinator)
			}
		}
	}

	gone := append([]coordinator.Member(nil), mn.list...)
	gone[1].Address = "127.0.0.1:1"
	if _, err := b.fanOuts(ctx, gone, 0, 1, namedCall{"Health/Check", healthCheck}); err == nil || !strings.Contains(err.Error(), "fan-out of Health/Check: 1 of 3 calls failed, the first: ") {
		t.Errorf("fan-out with a member down: %v, want the fan-out's error", err)
	}
}
