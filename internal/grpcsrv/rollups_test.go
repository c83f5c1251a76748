package grpcsrv

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCheckRunningRollupAtItsEdges(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		started time.Duration // before now
		ok      bool
	}{
		{0, true},
		{MaxRollupRun + ClockSkew, true},
		{MaxRollupRun + ClockSkew + time.Second, false},
		{-ClockSkew, true},
		{-ClockSkew - time.Second, false},
	} {
		err := CheckRunningRollup("r00000001", timestamppb.New(now.Add(-tc.started)), now)
		var pe *PolicyError
		if tc.ok != (err == nil) || (err != nil && (!errors.As(err, &pe) || pe.Reason != ReasonRollupNotRunning || pe.Field != "rollup_started_at")) {
			t.Errorf("started %v before now: got %v, want ok %v (else %s on rollup_started_at)", tc.started, err, tc.ok, ReasonRollupNotRunning)
		}
	}
	if err := CheckRunningRollup("r00000001", &timestamppb.Timestamp{Seconds: 1, Nanos: -1}, now); err == nil {
		t.Error("an invalid timestamp was taken")
	}
}
