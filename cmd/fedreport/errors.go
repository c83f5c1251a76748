package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/node"
)

// certHint is the hint for a server that could not be reached over mTLS.
const certHint = "(is the server running at that address, and do --cacert/--cert/--key belong to this federation?)"

// certRefusal says why a server refuses a client certificate and what to do.
const certRefusal = "revoked, expired, or not issued by this federation's CA, and the server's log says which; pass --crl to have the client check the revocation list itself, or ask the CA operator for a new certificate with `fedreport pki issue`"

// tlsHint is the hint for a server reached over mTLS that could not be
// called. A client whose certificate the server refuses gets the TLS alert
// "bad certificate", or, when its first write crosses the alert, only a
// broken pipe or a reset, which a server stopping mid-call also causes.
func tlsHint(msg string) string {
	if strings.Contains(msg, "server identity is ") {
		return "(the server at that address is not one this certificate may talk to, and nothing was sent to it; check the address)"
	}
	if strings.Contains(msg, "tls: bad certificate") {
		return "(the server refused the certificate in --cert: " + certRefusal + ")"
	}
	if strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer") {
		return "(the server closed the connection; at the start of a call that is most often the server refusing the certificate in --cert: " + certRefusal + ")"
	}
	return certHint
}

// describeRPCError turns a gRPC error into a message for an operator: the
// server's message, the field violations it does not already say, and a
// hint for transport failures.
func describeRPCError(op string, err error) error {
	return describeRPCErrorHint(op, err, tlsHint)
}

// describeNodeRPCError is describeRPCError for a call to the node at addr
// (--node): its admin socket involves no certificate, so a node that cannot
// be reached there gets a hint about the socket instead.
func describeNodeRPCError(op, addr string, err error) error {
	if strings.HasPrefix(addr, "unix:") {
		return describeRPCErrorHint(op, err, func(string) string { return "(is the node running with --admin-socket at that path?)" })
	}
	return describeRPCError(op, err)
}

// describeRPCErrorHint is describeRPCError with unavailable giving the hint,
// from the status message, for a server that could not be called.
func describeRPCErrorHint(op string, err error, unavailable func(msg string) string) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", op, st.Message())
	var (
		reason     string
		violations []*errdetails.BadRequest_FieldViolation
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
			fmt.Fprintf(&b, " [%s]", d.GetReason())
		}
	}
	for _, v := range violations {
		// The servers word the message from the violations (coordinator,
		// grpcsrv), as the one violation (node), or list the unknown ids
		// a retraction named, one violation each (node): print only what
		// the message leaves out.
		if reason == node.ReasonUnknownRecord || strings.Contains(st.Message(), v.GetDescription()) {
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
	}
	switch st.Code() {
	case codes.Unavailable:
		b.WriteString("\n  " + unavailable(st.Message()))
	case codes.PermissionDenied, codes.Unauthenticated:
		if reason == node.ReasonOtherMember {
			b.WriteString("\n  (see `fedreport pki issue --role member-admin --member`)")
			break
		}
		// The server names the roles that may call (internal/authz).
		b.WriteString("\n  (certificates are issued with `fedreport pki issue --role`)")
	}
	return fmt.Errorf("%s", b.String())
}

// exitPartial is the exit code of a rollup that printed partial totals, so
// that a script can tell them from an error (1) and from the alliance total (0).
const exitPartial = 3

// exitError is an error for which main exits with code rather than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the code main exits with after err: 0 for none, an
// exitError's own code, 1 for any other error.
func exitCode(err error) int {
	var e *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e.code
	}
	return 1
}
