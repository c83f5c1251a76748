package coordinator

import (
	"google.golang.org/protobuf/encoding/protowire"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// GetRollup and ListRollups answer in a view (AIP-157): FULL is the rollup as
// stored; BASIC, the default, leaves out Rollup.members, the per-member
// results that make up nearly all of a big rollup (~19 KB and ~1,200
// messages at 200 members, against ~200 bytes without them).

// membersField is Rollup.members.
const membersField protowire.Number = 7

// fullView reports whether view asks for the FULL view, or says what to fix.
func fullView(view fedreportv1.RollupView, verr *ValidationError) bool {
	switch view {
	case fedreportv1.RollupView_ROLLUP_VIEW_UNSPECIFIED, fedreportv1.RollupView_ROLLUP_VIEW_BASIC:
		return false
	case fedreportv1.RollupView_ROLLUP_VIEW_FULL:
		return true
	}
	verr.add("view", "%d is not a view; want ROLLUP_VIEW_BASIC (the default) or ROLLUP_VIEW_FULL", view)
	return false
}
