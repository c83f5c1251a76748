// Package authz enforces fedreport's access matrix with one unary and one
// stream server interceptor over a table keyed by full gRPC method names.
// Anything the table does not name is denied. Health checks and reflection
// are open to any authenticated peer.
package authz

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// Allow decides whether an identity may call a method.
type Allow func(identity.ID) bool

// Rules maps full method names (the generated FullMethodName constants) to
// who may call them.
type Rules map[string]Allow

// Roles allows any identity with one of the roles.
func Roles(roles ...identity.Role) Allow {
	return func(id identity.ID) bool {
		for _, r := range roles {
			if id.Role == r {
				return true
			}
		}
		return false
	}
}

// MemberAdminOf allows the administrators of member.
func MemberAdminOf(member string) Allow {
	return func(id identity.ID) bool { return id.Role == identity.RoleMemberAdmin && id.Member == member }
}

// Any allows an identity that any of the rules allow.
func Any(allows ...Allow) Allow {
	return func(id identity.ID) bool {
		for _, a := range allows {
			if a(id) {
				return true
			}
		}
		return false
	}
}

// openPrefixes are services any authenticated peer may call.
var openPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// Check returns nil if the identity of ctx may call method, else an
// Unauthenticated or PermissionDenied status naming identity and method.
func (r Rules) Check(ctx context.Context, method string) error {
	return r.check(ctx, method, nil)
}

// Explain words a refusal more precisely than "X may not call M": it is
// called only for an identity the rules refused, and returns the status to
// send instead, or nil to keep the generic one.
type Explain func(id identity.ID, method string) error

func (r Rules) check(ctx context.Context, method string, explain Explain) error {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return status.Errorf(codes.Unauthenticated, "%s needs a verified client certificate with a fedreport identity", method)
	}
	for _, p := range openPrefixes {
		if strings.HasPrefix(method, p) {
			return nil
		}
	}
	if allow, ok := r[method]; ok && allow(id) {
		return nil
	}
	if explain != nil {
		if err := explain(id, method); err != nil {
			return err
		}
	}
	return status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
}

// UnaryServerInterceptor enforces r on unary calls; explain, if given,
// words its refusals.
func UnaryServerInterceptor(r Rules, explain ...Explain) grpc.UnaryServerInterceptor {
	ex := first(explain)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := r.check(ctx, info.FullMethod, ex); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor enforces r on streaming calls; explain, if given,
// words its refusals.
func StreamServerInterceptor(r Rules, explain ...Explain) grpc.StreamServerInterceptor {
	ex := first(explain)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := r.check(ss.Context(), info.FullMethod, ex); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func first(explain []Explain) Explain {
	if len(explain) == 0 {
		return nil
	}
	return explain[0]
}
