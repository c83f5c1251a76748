package main

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/node"
)

// describeRPCError turns a gRPC error into a message for an operator: the
// server's message, its field violations, and a hint for transport failures.
func describeRPCError(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", op, st.Message())
	var reason string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
			fmt.Fprintf(&b, " [%s]", d.GetReason())
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		b.WriteString("\n  (is the server running at that address, and do --cacert/--cert/--key belong to this federation?)")
	case codes.PermissionDenied, codes.Unauthenticated:
		if reason == node.ReasonOtherMember {
			b.WriteString("\n  (see `fedreport pki issue --role member-admin --member`)")
			break
		}
		b.WriteString("\n  (use the certificate of a role that may call this; see `fedreport pki issue --role`)")
	}
	return fmt.Errorf("%s", b.String())
}
