package grpcsrv

import (
	"fmt"
	"strings"
)

// Reasons (google.rpc.ErrorInfo.reason) a disclosure policy refuses an
// Aggregate request with, a node's own or the one a coordinator answering
// as a member advertises.
const (
	ReasonDimensionNotAllowed = "DIMENSION_NOT_ALLOWED"
	ReasonPeriodNotAllowed    = "PERIOD_NOT_ALLOWED"
)

// PolicyError is an Aggregate request a disclosure policy refuses: a node
// and a coordinator answering as a member refuse it in the same shape
// (FAILED_PRECONDITION, Reason, a violation on Field), so that the
// coordinator that asked records both alike.
type PolicyError struct {
	Reason string // ReasonDimensionNotAllowed or ReasonPeriodNotAllowed
	Field  string // the request field to change
	Msg    string // which rule, and how to change the request
}

func (e *PolicyError) Error() string { return e.Msg }

// MaxRollupIDLen is the longest rollup_id an Aggregate request may carry.
const MaxRollupIDLen = 128

// RollupIDProblem says what is wrong with id as an Aggregate request's
// rollup_id, "" when nothing is: a node and a coordinator answering as a
// member take the same ids. An empty id is fine (the caller ran no rollup).
func RollupIDProblem(id string) string {
	if len(id) > MaxRollupIDLen || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return fmt.Sprintf("is not an id (want at most %d printable ASCII characters without spaces)", MaxRollupIDLen)
	}
	return ""
}
