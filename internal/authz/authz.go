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
	return status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
}

// UnaryServerInterceptor enforces r on unary calls.
func UnaryServerInterceptor(r Rules) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := r.Check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor enforces r on streaming calls.
func StreamServerInterceptor(r Rules) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := r.Check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
