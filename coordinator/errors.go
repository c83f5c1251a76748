package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
)

// ErrRollupNotFound is returned when no stored rollup has the requested id.
var ErrRollupNotFound = errors.New("rollup not found")

// ErrRollupFinished is returned when something tries to change a rollup that
// has already finished; finished rollups are never modified.
var ErrRollupFinished = errors.New("rollup already finished")

// ErrClosed is returned when the coordinator is shutting down or closed.
var ErrClosed = errors.New("coordinator is closed")

// ErrSchemaVersion is returned when the data file was written by a newer or
// unknown schema version.
var ErrSchemaVersion = errors.New("unsupported coordinator schema version")

// ErrInUse is returned by Open when another process holds the data file.
// Its message is completed with the file and the process that holds it.
var ErrInUse = errors.New("data file is in use")

// NotCoordinatorFileError is returned by Open for an existing bbolt file that
// is not a coordinator's data file, such as a member node's. Open writes
// nothing to such a file.
type NotCoordinatorFileError struct {
	// Member is the member code a node's data file belongs to; empty when
	// the file is not a node's either.
	Member string
}

func (e *NotCoordinatorFileError) Error() string {
	what := "a bbolt file that is not a coordinator's data file"
	if e.Member != "" {
		what = fmt.Sprintf("the data file of member %s's node, not a coordinator's", e.Member)
	}
	return "it is " + what + "; give the coordinator a --data file of its own (a new path is created)"
}

// errorDomain is the ErrorInfo domain of every error the coordinator returns.
const errorDomain = "fedreport.coordinator"

// ErrorInfo reasons; clients branch on these, never on message text.
const (
	reasonInvalidArgument = "INVALID_ARGUMENT"
	reasonRollupNotFound  = "ROLLUP_NOT_FOUND"
	reasonUnavailable     = "COORDINATOR_UNAVAILABLE"
	reasonNotComplete     = "ROLLUP_NOT_COMPLETE"
	reasonInternal        = "INTERNAL"
	// reasonAnswerTooLarge is the reason a node gives for the same
	// refusal (node.ReasonAnswerTooLarge).
	reasonAnswerTooLarge = "ANSWER_TOO_LARGE"
)

// FieldViolation names one invalid request field and says what to fix.
type FieldViolation struct {
	// Field is the request field path, as in AIP-193 ("spec.from", "page_token").
	Field string
	// Description says what is wrong and what would be accepted.
	Description string
}

// ValidationError is returned for a request that breaks the API's rules. It
// lists every problem found, not only the first.
type ValidationError struct {
	Violations []FieldViolation
}

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// add records a violation.
func (e *ValidationError) add(field, format string, args ...any) {
	e.Violations = append(e.Violations, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// errOrNil returns e when it holds a violation, nil otherwise.
func (e *ValidationError) errOrNil() error {
	if len(e.Violations) == 0 {
		return nil
	}
	return e
}

// toStatus maps a domain error to the gRPC status returned to a peer. Unknown
// errors become Internal with a generic message and are logged here, so no
// path or bbolt detail reaches a peer.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	var verr *ValidationError
	var incomplete *IncompleteError
	var tooLarge *grpcsrv.AnswerTooLargeError
	var policy *grpcsrv.PolicyError
	var refused *RefusedError
	switch {
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field:       v.Field,
				Description: v.Description,
			})
		}
		return withDetails(codes.InvalidArgument, verr.Error(), reasonInvalidArgument, br)
	case errors.As(err, &incomplete):
		st := status.New(codes.FailedPrecondition, incomplete.Error())
		if withD, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reasonNotComplete, Domain: errorDomain, Metadata: map[string]string{
			"member":    incomplete.Member, // whose rollup: the asker has ids of its own
			"rollup_id": incomplete.Rollup.GetId(),
			"state":     rollupStateName(incomplete.Rollup.GetState()),
		}}); derr == nil {
			st = withD
		}
		return st.Err()
	case errors.As(err, &tooLarge):
		return withDetails(codes.ResourceExhausted, tooLarge.Error(), reasonAnswerTooLarge,
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "group_by", Description: tooLarge.Error()}}})
	case errors.As(err, &policy):
		return withDetails(codes.FailedPrecondition, policy.Msg, policy.Reason,
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: policy.Field, Description: policy.Msg}}})
	case errors.As(err, &refused):
		st := status.New(codes.FailedPrecondition, refused.Msg)
		br := &errdetails.BadRequest{}
		for _, f := range refused.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f, Description: refused.Msg})
		}
		info := &errdetails.ErrorInfo{Reason: refused.Reason, Domain: errorDomain, Metadata: map[string]string{
			"members": strings.Join(refused.Members, ","),
		}}
		if withD, derr := st.WithDetails(info, br); derr == nil {
			st = withD
		}
		return st.Err()
	case errors.Is(err, ErrRollupNotFound):
		return withDetails(codes.NotFound, err.Error(), reasonRollupNotFound)
	case errors.Is(err, ErrClosed):
		return withDetails(codes.Unavailable, "coordinator is shutting down; retry against a running coordinator", reasonUnavailable)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request deadline exceeded")
	default:
		log.Error("request failed", "method", method, "err", err)
		return withDetails(codes.Internal, "internal coordinator error; the coordinator's log has the details", reasonInternal)
	}
}

// withDetails builds a status carrying ErrorInfo{reason} and any extra
// details. The message and the descriptions of BadRequest details go through
// echo.Limit, a backstop behind echo.Quote: no error path can send a
// request's value back whole.
func withDetails(code codes.Code, msg, reason string, extra ...protoadapt.MessageV1) error {
	for _, d := range extra {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				v.Field = echo.Limit(v.GetField(), 4*echo.MaxBytes)
				v.Description = echo.Limit(v.GetDescription(), echo.MaxMessage)
			}
		}
	}
	st := status.New(code, echo.Limit(msg, echo.MaxMessage))
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}}, extra...)
	if withD, err := st.WithDetails(details...); err == nil {
		st = withD
	}
	return st.Err()
}
