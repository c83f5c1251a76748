package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/records"
)

// ErrInUse is returned by Open when another process holds the data file.
// Its message is completed with the file and the process that holds it.
var ErrInUse = errors.New("data file is in use")

// ErrClosed is returned by a Store used after Close.
var ErrClosed = errors.New("store is closed")

// ErrIngestFinished is returned by an Ingest used after Commit or Abort.
var ErrIngestFinished = errors.New("ingest stream is already committed or aborted")

// MemberMismatchError is returned by Open when the data file belongs to
// another member than the configured one.
type MemberMismatchError struct {
	Path       string
	Stored     string // member code in the file's meta bucket
	Configured string
}

func (e *MemberMismatchError) Error() string {
	return fmt.Sprintf("data file %s belongs to member %s, not %s (check --member and --data)", e.Path, e.Stored, e.Configured)
}

// CoordinatorFileError is returned by Open for a coordinator's data file.
type CoordinatorFileError struct {
	Path string
}

func (e *CoordinatorFileError) Error() string {
	return fmt.Sprintf("data file %s is a coordinator's data file, not a node's; give the node its own --data file (a new path is created)", e.Path)
}

// SchemaVersionError is returned by Open for a data file whose layout this
// build does not know.
type SchemaVersionError struct {
	Path  string
	Found uint32 // 0 when the file has no schema version at all
}

func (e *SchemaVersionError) Error() string {
	if e.Found == 0 {
		return fmt.Sprintf("data file %s has no fedreport schema version (is it a node's data file?)", e.Path)
	}
	return fmt.Sprintf("data file %s has schema version %d; this fedreport reads version %d", e.Path, e.Found, SchemaVersion)
}

// CorruptError is an inconsistency found in the data file, such as a counter
// that would go negative. It is an internal error: the file needs `fedreport verify`.
type CorruptError struct {
	Problem string
}

func (e *CorruptError) Error() string { return "data file is inconsistent: " + e.Problem }

// RecordError is an invalid record in an ingest stream. Index counts the
// records of the stream from 1; SourceIndex counts those of Source.
type RecordError struct {
	Index       uint64
	Source      string
	SourceIndex uint64
	Err         error // usually a *records.FieldError
}

func (e *RecordError) Error() string {
	return recordPlace(e.Index, e.Source, e.SourceIndex) + ": " + e.Err.Error()
}

func (e *RecordError) Unwrap() error { return e.Err }

func recordPlace(index uint64, source string, sourceIndex uint64) string {
	if source == "" {
		return "record " + strconv.FormatUint(index, 10) + " of the stream"
	}
	return "record " + strconv.FormatUint(sourceIndex, 10) + " of " + echo.Name(source)
}

// DuplicateRecordError is a record_id sent twice in one ingest stream. The
// stream is refused: which of the two is meant cannot be guessed.
type DuplicateRecordError struct {
	ID          string
	Index       uint64 // the later occurrence, counted in the stream from 1
	Source      string
	SourceIndex uint64
}

func (e *DuplicateRecordError) Error() string {
	return fmt.Sprintf("%s: record_id %s was already sent earlier in this stream (send each record once; a later stream may correct it)",
		recordPlace(e.Index, e.Source, e.SourceIndex), echo.Quote(e.ID))
}

// UnknownRecordsError is a retraction naming record ids the node does not
// hold; nothing was retracted.
type UnknownRecordsError struct {
	IDs []string // the ids not stored, in the order asked
	Of  int      // the distinct ids the retraction named
}

func (e *UnknownRecordsError) Error() string {
	const show = 20
	ids := e.IDs
	more := ""
	if len(ids) > show {
		more = fmt.Sprintf(" and %d more", len(ids)-show)
		ids = ids[:show]
	}
	shown := make([]string, len(ids))
	for i, id := range ids {
		shown[i] = echo.Name(id)
	}
	list := strings.Join(shown, ", ") + more
	// A retraction sent again, after its answer was lost, finds every one
	// of its records gone: say so, as that one is done.
	if len(e.IDs) == e.Of {
		return fmt.Sprintf("nothing retracted: no record_id of the %d is stored (never ingested, or retracted already, as when a retraction is sent again): %s", e.Of, list)
	}
	return fmt.Sprintf("nothing retracted: %d of the %d record_ids are not stored (never ingested, or retracted already): %s; send the retraction again without them", len(e.IDs), e.Of, list)
}

// Reasons a node's policy refuses a request (google.rpc.ErrorInfo.reason).
const (
	ReasonDimensionNotAllowed = grpcsrv.ReasonDimensionNotAllowed
	ReasonPeriodNotAllowed    = grpcsrv.ReasonPeriodNotAllowed
	// ReasonPeriodNotAligned refuses a window that release periods do not
	// tile; the message names the nearest windows that are allowed.
	ReasonPeriodNotAligned = "PERIOD_NOT_ALIGNED"
	// ReasonTableNotPublished refuses a group_by that is not a published table.
	ReasonTableNotPublished = "TABLE_NOT_PUBLISHED"
)

// PolicyError is an aggregate request the member's disclosure policy refuses.
type PolicyError = grpcsrv.PolicyError

// ErrorDomain is the google.rpc.ErrorInfo domain of fedreport's errors.
const ErrorDomain = "fedreport.isa"

// Other ErrorInfo reasons a node sends.
const (
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	ReasonInvalidRecord   = "INVALID_RECORD"
	ReasonDuplicateRecord = "DUPLICATE_RECORD_ID"
	ReasonUnknownRecord   = "UNKNOWN_RECORD_ID"
	ReasonUnavailable     = "NODE_UNAVAILABLE"
	ReasonInternal        = "INTERNAL"
	ReasonDiskFull        = "DISK_FULL"
	ReasonAnswerTooLarge  = "ANSWER_TOO_LARGE"
	// ReasonOtherMember refuses a member-admin certificate of another
	// member: the role is right, the member is not.
	ReasonOtherMember = "OTHER_MEMBER"
)

// toStatus maps an error of the store to a gRPC status with
// google.rpc details; unknown errors become a generic Internal (the caller
// logs the original). internal reports whether that happened.
func toStatus(err error) (st error, internal bool) {
	if err == nil {
		return nil, false
	}
	if s, ok := status.FromError(err); ok {
		return s.Err(), false
	}
	var (
		fe  *records.FieldError
		re  *RecordError
		de  *DuplicateRecordError
		ue  *UnknownRecordsError
		pe  *PolicyError
		te  *grpcsrv.AnswerTooLargeError
		msg = err.Error()
	)
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.As(err, &re):
		field := fmt.Sprintf("records[%d]", re.Index-1)
		if errors.As(re.Err, &fe) {
			field += "." + fe.Field
		}
		return withDetails(codes.InvalidArgument, msg, ReasonInvalidRecord, violation(field, msg)), false
	case errors.As(err, &de):
		return withDetails(codes.InvalidArgument, msg, ReasonDuplicateRecord,
			violation(fmt.Sprintf("records[%d].record_id", de.Index-1), msg)), false
	case errors.As(err, &fe):
		return withDetails(codes.InvalidArgument, msg, ReasonInvalidArgument, violation(fe.Field, msg)), false
	case errors.As(err, &ue):
		var vs []*errdetails.BadRequest_FieldViolation
		for i, id := range ue.IDs {
			if i == 100 {
				break
			}
			vs = append(vs, &errdetails.BadRequest_FieldViolation{Field: "record_ids", Description: "record_id " + echo.Quote(id) + " is not stored"})
		}
		return withDetails(codes.NotFound, msg, ReasonUnknownRecord, vs...), false
	case errors.As(err, &te):
		return withDetails(codes.ResourceExhausted, msg, ReasonAnswerTooLarge, violation("group_by", msg)), false
	case errors.As(err, &pe):
		return withDetails(codes.FailedPrecondition, msg, pe.Reason, violation(pe.Field, msg)), false
	case errors.Is(err, ErrClosed):
		return withDetails(codes.Unavailable, "node is shutting down", ReasonUnavailable), false
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, berrors.ErrMaxSizeReached):
		// Logged too: the ministry's operator must free space on the node.
		return withDetails(codes.ResourceExhausted,
			"the node's disk is full: nothing of this write was stored; free space on the node and send it again",
			ReasonDiskFull), true
	}
	return withDetails(codes.Internal, "internal error in the node; its log has the details", ReasonInternal), true
}

func violation(field, desc string) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: desc}
}

// withDetails builds the status sent to a peer. Its message and field
// descriptions go through echo.Limit, a backstop behind echo.Quote: no
// error path can send a request's value back whole.

func withDetails(code codes.Code, msg, reason string, violations ...*errdetails.BadRequest_FieldViolation) error {
	msg = echo.Limit(msg, echo.MaxMessage)
	for _, v := range violations {
		v.Field = echo.Limit(v.GetField(), echo.MaxBytes*4)
		v.Description = echo.Limit(v.GetDescription(), echo.MaxMessage)
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}}
	if len(violations) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: violations})
	}
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}
