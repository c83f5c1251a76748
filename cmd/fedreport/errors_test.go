package main

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestARefusalSaysEachFactOnce sends the coordinator a rollup ending on a
// day that does not exist: the servers word their message from the field
// violations, and the CLI prints the fact once, not again below it.
func TestARefusalSaysEachFactOnce(t *testing.T) {
	t.Parallel()
	coordinator := frAndDownGB(t)
	_, _, err := runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-02-01", "--to", "2020-02-30", "--metrics", "arrests"}, coordinator()...)...)
	want := `rollup: invalid request: spec.to: "2020-02-30" does not exist (2020-02 has 29 days) [INVALID_ARGUMENT]`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestAFieldViolationThatAddsToTheMessageIsPrinted checks the other side:
// a violation the message does not carry is printed under it.
func TestAFieldViolationThatAddsToTheMessageIsPrinted(t *testing.T) {
	t.Parallel()
	st, err := status.New(codes.InvalidArgument, "invalid request: spec.to: too late").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "spec.to", Description: "too late"},
			{Field: "spec.metrics[1]", Description: "arrests is listed twice"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	got := describeRPCError("rollup", st.Err()).Error()
	want := "rollup: invalid request: spec.to: too late [INVALID_ARGUMENT]\n  spec.metrics[1]: arrests is listed twice"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
