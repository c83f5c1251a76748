package coordinator

import (
	"context"
	"fmt"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// VersionChange compares one member's data version in two runs of the same
// spec: what `fedreport rollup --rerun ID` prints per member. A data version
// is known only when the member answered correctly (status ok); any other
// status says nothing trustworthy about its data.
type VersionChange struct {
	// Member is the member code.
	Member string
	// Before is the member's data version in the original rollup, valid
	// when BeforeKnown.
	Before uint64
	// After is the member's data version in the rerun, valid when AfterKnown.
	After uint64
	// BeforeKnown and AfterKnown say whether the member answered correctly
	// in the original rollup and in the rerun.
	BeforeKnown, AfterKnown bool
	// BeforeStatus and AfterStatus are the member's statuses in each run;
	// unspecified when the member was not registered at the time.
	BeforeStatus, AfterStatus fedreportv1.MemberStatus
}

// Changed reports whether both data versions are known and differ: the
// member's data changed (ingest, correction, retraction) between the runs.
func (v VersionChange) Changed() bool {
	return v.BeforeKnown && v.AfterKnown && v.Before != v.After
}

// Known reports whether both data versions are known, so Changed is an answer
// rather than "cannot tell".
func (v VersionChange) Known() bool { return v.BeforeKnown && v.AfterKnown }

// String describes the change in one line, as in "FR 41 -> 43 changed",
// "IT 12 unchanged" or "ES unknown (before: ok 7, after: timeout)".
func (v VersionChange) String() string {
	switch {
	case v.Changed():
		return fmt.Sprintf("%s %d -> %d changed", v.Member, v.Before, v.After)
	case v.Known():
		return fmt.Sprintf("%s %d unchanged", v.Member, v.After)
	default:
		return fmt.Sprintf("%s unknown (before: %s, after: %s)", v.Member,
			versionSide(v.BeforeStatus, v.BeforeKnown, v.Before), versionSide(v.AfterStatus, v.AfterKnown, v.After))
	}
}

func versionSide(s fedreportv1.MemberStatus, known bool, dv uint64) string {
	switch {
	case s == fedreportv1.MemberStatus_MEMBER_STATUS_UNSPECIFIED:
		return "not registered"
	case known:
		return fmt.Sprintf("ok %d", dv)
	default:
		return memberStatusName(s)
	}
}

// CompareDataVersions compares every member's data version in an original
// rollup and its rerun: members of the rerun in its order, then members only
// the original had. The CLI's `rollup --rerun ID` is GetRollup, StartRollup
// with the same spec, then this; Rerun does the same in process.
func CompareDataVersions(before, after *fedreportv1.Rollup) []VersionChange {
	side := func(r *fedreportv1.Rollup) map[string]*fedreportv1.MemberResult {
		out := make(map[string]*fedreportv1.MemberResult, len(r.GetMembers()))
		for _, m := range r.GetMembers() {
			out[m.GetMember()] = m
		}
		return out
	}
	b, a := side(before), side(after)
	var order []string
	for _, m := range after.GetMembers() {
		order = append(order, m.GetMember())
	}
	for _, m := range before.GetMembers() {
		if a[m.GetMember()] == nil {
			order = append(order, m.GetMember())
		}
	}
	out := make([]VersionChange, 0, len(order))
	for _, code := range order {
		v := VersionChange{Member: code}
		if m := b[code]; m != nil {
			v.BeforeStatus = m.GetStatus()
			v.BeforeKnown = m.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK
			v.Before = m.GetDataVersion()
		}
		if m := a[code]; m != nil {
			v.AfterStatus = m.GetStatus()
			v.AfterKnown = m.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK
			v.After = m.GetDataVersion()
		}
		out = append(out, v)
	}
	return out
}

// Rerun runs the spec of the stored rollup id again, as a new rollup
// requested by requester, and compares each member's data version with the
// original's. The original is never changed.
func (c *Coordinator) Rerun(ctx context.Context, id, requester string) (*fedreportv1.Rollup, []VersionChange, error) {
	before, err := c.GetRollup(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	after, err := c.StartRollup(ctx, before.GetSpec(), requester)
	if err != nil {
		return nil, nil, fmt.Errorf("rerun %s: %w", before.GetId(), err)
	}
	return after, CompareDataVersions(before, after), nil
}
