// Package authz enforces fedreport's access matrix with one unary and one
// stream server interceptor over a table keyed by full gRPC method names.
// Anything the table does not name is denied. Health checks and reflection
// are open to any authenticated peer.
package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/identity"
)

// Allow decides whether an identity may call a method. It also knows the
// roles it allows (some identities of), which a refusal names; the zero
// Allow allows no one.
type Allow struct {
	allows func(identity.ID) bool
	roles  []identity.Role
}

// Allows reports whether id may call.
func (a Allow) Allows(id identity.ID) bool { return a.allows != nil && a.allows(id) }

// Rules maps full method names (the generated FullMethodName constants) to
// who may call them.
type Rules map[string]Allow

// Roles allows any identity with one of the roles.
func Roles(roles ...identity.Role) Allow {
	return Allow{allows: func(id identity.ID) bool { return slices.Contains(roles, id.Role) }, roles: roles}
}

// MemberAdminOf allows the administrators of member.
func MemberAdminOf(member string) Allow {
	return Allow{
		allows: func(id identity.ID) bool { return id.Role == identity.RoleMemberAdmin && id.Member == member },
		roles:  []identity.Role{identity.RoleMemberAdmin},
	}
}

// Any allows an identity that any of the rules allow.
func Any(allows ...Allow) Allow {
	var roles []identity.Role
	for _, a := range allows {
		for _, r := range a.roles {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	return Allow{allows: func(id identity.ID) bool {
		return slices.ContainsFunc(allows, func(a Allow) bool { return a.Allows(id) })
	}, roles: roles}
}

// InDomain allows what a allows of the identities of trustDomain.
func InDomain(trustDomain string, a Allow) Allow {
	return Allow{allows: func(id identity.ID) bool { return id.TrustDomain == trustDomain && a.Allows(id) }, roles: a.roles}
}

// refusal is the message refusing id a call of method, which allow
// refused. An identity of the wrong role is told the roles that may call;
// one of a right role was refused for its trust domain or member, which
// the message does not disclose (a server's Explain may).
func refusal(id identity.ID, method string, allow Allow) string {
	// The method is the peer's :path: a name no rule knows may be anything.
	msg := fmt.Sprintf("%s may not call %s", id, echo.Name(method))
	roles := allow.roles
	if len(roles) == 0 || slices.Contains(roles, id.Role) {
		return msg
	}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	list := names[len(names)-1]
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + " or " + list
	}
	article := "a"
	if strings.ContainsRune("aeiou", rune(list[0])) {
		article = "an"
	}
	return fmt.Sprintf("%s; it needs %s %s certificate", msg, article, list)
}

// openPrefixes are services any authenticated peer may call.
var openPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// Check returns nil if the identity of ctx may call method, else an
// Unauthenticated or PermissionDenied status naming identity and method
// and, for an identity of the wrong role, the roles that may call it.
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
		return status.Errorf(codes.Unauthenticated, "%s needs a verified client certificate with a fedreport identity", echo.Name(method))
	}
	for _, p := range openPrefixes {
		if strings.HasPrefix(method, p) {
			return nil
		}
	}
	allow := r[method]
	if allow.Allows(id) {
		return nil
	}
	if explain != nil {
		if err := explain(id, method); err != nil {
			return err
		}
	}
	return status.Error(codes.PermissionDenied, refusal(id, method, allow))
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

// Tap enforces Rules when a call's headers arrive (grpc.InTapHandle), before
// grpc reads, allocates and decodes its request: a peer the rules refuse
// costs the server the frames it sent, which grpc discards as they come,
// and never a decoded request. A tap handle sees the verified peer: grpc
// puts the connection's peer, with the AuthInfo of its TLS handshake, in
// the context it passes. The interceptors stay in place behind it.
type Tap struct {
	Rules Rules
	// Explain, if set, words refusals as for the interceptors.
	Explain Explain
	// Denied, if set, is told of each refusal of a method that Rules
	// names (metrics count refused calls; a method no rule names is
	// peer-chosen text, which would make a metric label without bound).
	Denied func(method string, err error)
}

// Handle is the tap.ServerInHandle of t.
func (t Tap) Handle(ctx context.Context, info *tap.Info) (context.Context, error) {
	err := t.Rules.check(ctx, info.FullMethodName, t.Explain)
	if err != nil && t.Denied != nil {
		if _, named := t.Rules[info.FullMethodName]; named {
			t.Denied(info.FullMethodName, err)
		}
	}
	return ctx, err
}
