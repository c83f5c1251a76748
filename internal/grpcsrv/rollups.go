package grpcsrv

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/echo"
)

// A coordinator asks a member only within one of its rollups: each
// Aggregate it sends names the rollup (rollup_id) and when it started
// (rollup_started_at, by the coordinator's clock), and the member's
// disclosure log keeps both beside the caller. A member never calls out, so
// it cannot look the rollup up in the coordinator's store; what it checks
// alone is that the rollup can still be running: it started at most
// MaxRollupRun ago and not after now, give or take ClockSkew. A
// coordinator's fan-out ends within its member timeout, which
// `fedreport coordinator` keeps within MaxRollupRun.
//
// So an answer cannot be asked for under a rollup that is over, and every
// answer names one rollup (caller, id and start) that the ministry can
// match with the coordinator's (`fedreport rollups show ID`). Ids alone are
// not unique: a coordinator started on a new or restored data file numbers
// its rollups from r00000001 again, and two coordinators of one identity
// number theirs apart.
const (
	// MaxRollupRun is the longest a member answers a rollup after it started.
	MaxRollupRun = 15 * time.Minute
	// ClockSkew is how far a coordinator's clock may be from a member's.
	ClockSkew = 2 * time.Minute
	// ReasonRollupNotRunning refuses an Aggregate whose rollup cannot be
	// running (google.rpc.ErrorInfo.reason).
	ReasonRollupNotRunning = "ROLLUP_NOT_RUNNING"
)

// CheckRunningRollup returns nil when the rollup id that started at started
// can be running at now, and otherwise a *PolicyError that says why and
// what to do (on rollup_id or rollup_started_at).
func CheckRunningRollup(id string, started *timestamppb.Timestamp, now time.Time) error {
	refuse := func(field, format string, args ...any) error {
		return &PolicyError{Reason: ReasonRollupNotRunning, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case id == "":
		return refuse("rollup_id", "a coordinator asks only within a rollup: name it in rollup_id, with rollup_started_at")
	case started == nil:
		return refuse("rollup_started_at", "rollup %s: rollup_started_at is required from a coordinator (when the rollup started, by its clock)", echo.Quote(id))
	case started.CheckValid() != nil:
		return refuse("rollup_started_at", "rollup %s: rollup_started_at is not a valid time: %v", echo.Quote(id), started.CheckValid())
	}
	start := started.AsTime()
	if ahead := start.Sub(now); ahead > ClockSkew {
		return refuse("rollup_started_at", "rollup %s starts at %s, %s ahead of this member's clock (more than the %s allowed): check the clocks of the coordinator and the member (NTP)",
			echo.Quote(id), start.UTC().Format(time.RFC3339), ahead.Round(time.Second), ClockSkew)
	}
	if age := now.Sub(start); age > MaxRollupRun+ClockSkew {
		return refuse("rollup_started_at", "rollup %s started at %s, %s ago by this member's clock: a member answers a rollup for %s after its start (plus %s for the clocks), so this one is over; start a new rollup, or check the clocks (NTP)",
			echo.Quote(id), start.UTC().Format(time.RFC3339), age.Round(time.Second), MaxRollupRun, ClockSkew)
	}
	return nil
}
