// Package identity is the one place that knows fedreport's SPIFFE-style
// identity scheme. A peer's identity is the single URI SAN of its verified
// certificate, parsed once into an ID and compared as a value.
//
//	spiffe://<trust-domain>/node/FR
//	spiffe://<trust-domain>/coordinator/<name>
//	spiffe://<trust-domain>/operator/<name>
//	spiffe://<trust-domain>/analyst/<name>
//	spiffe://<trust-domain>/member-admin/FR/<name>
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what an identity may do in the federation.
type Role string

// The roles of DESIGN.md's access matrix.
const (
	RoleNode        Role = "node"
	RoleCoordinator Role = "coordinator"
	RoleOperator    Role = "operator"
	RoleAnalyst     Role = "analyst"
	RoleMemberAdmin Role = "member-admin"
)

// Roles lists every role, in the order of DESIGN.md.
var Roles = []Role{RoleNode, RoleCoordinator, RoleOperator, RoleAnalyst, RoleMemberAdmin}

// ErrNoIdentity is returned when a peer presented no verified certificate
// carrying exactly one fedreport URI SAN.
var ErrNoIdentity = errors.New("no verified fedreport identity")

// ID is a parsed identity. The zero ID is no identity.
type ID struct {
	TrustDomain string
	Role        Role
	Member      string // set for node and member-admin
	Name        string // set for coordinator, operator, analyst and member-admin
}

var (
	memberRE = regexp.MustCompile(`^[A-Z0-9]{2,8}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	domainRE = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)
)

// ValidMember reports whether code is a well-formed member code (2-8
// upper-case letters or digits, like FR or GB).
func ValidMember(code string) bool { return memberRE.MatchString(code) }

// UpperMember returns code with ASCII a-z upper-cased and every other byte
// as it is: member codes are upper case, and every flag and config file
// that takes one accepts it in either case (fr is FR). Check the result
// with ValidMember. strings.ToUpper would not do: it maps some non-ASCII
// letters onto ASCII ones ("ſ", U+017F, becomes "S"), so a code no one
// could type as FR's would pass as valid.
func UpperMember(code string) string {
	b := []byte(code)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// Node returns the identity of member's node.
func Node(trustDomain, member string) ID {
	return ID{TrustDomain: trustDomain, Role: RoleNode, Member: member}
}

// Coordinator returns the identity of a coordinator.
func Coordinator(trustDomain, name string) ID {
	return ID{TrustDomain: trustDomain, Role: RoleCoordinator, Name: name}
}

// Operator returns the identity of an operator, who may start rollups.
func Operator(trustDomain, name string) ID {
	return ID{TrustDomain: trustDomain, Role: RoleOperator, Name: name}
}

// Analyst returns the identity of an analyst, who may read rollups.
func Analyst(trustDomain, name string) ID {
	return ID{TrustDomain: trustDomain, Role: RoleAnalyst, Name: name}
}

// MemberAdmin returns the identity of one of member's administrators.
func MemberAdmin(trustDomain, member, name string) ID {
	return ID{TrustDomain: trustDomain, Role: RoleMemberAdmin, Member: member, Name: name}
}

// New builds and validates an identity from its parts, as `fedreport pki
// issue` takes them.
func New(trustDomain string, role Role, member, name string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Role: role, Member: member, Name: name}
	return id, id.Validate()
}

// IsZero reports whether id is no identity.
func (id ID) IsZero() bool { return id == ID{} }

// Validate checks that id is well formed for its role.
func (id ID) Validate() error {
	if !domainRE.MatchString(id.TrustDomain) {
		return fmt.Errorf("trust domain %q: want lower-case letters, digits, '.', '_' or '-'", id.TrustDomain)
	}
	needMember, needName := false, false
	switch id.Role {
	case RoleNode:
		needMember = true
	case RoleCoordinator, RoleOperator, RoleAnalyst:
		needName = true
	case RoleMemberAdmin:
		needMember, needName = true, true
	default:
		return fmt.Errorf("role %q is not a role (want node, coordinator, operator, analyst, member-admin)", id.Role)
	}
	if needMember && !ValidMember(id.Member) {
		return fmt.Errorf("%s identity needs a member code of 2-8 upper-case letters or digits, got %q", id.Role, id.Member)
	}
	if !needMember && id.Member != "" {
		return fmt.Errorf("%s identity takes no member code, got %q", id.Role, id.Member)
	}
	if needName && !nameRE.MatchString(id.Name) {
		return fmt.Errorf("%s identity needs a name of 1-64 characters [A-Za-z0-9._-], got %q", id.Role, id.Name)
	}
	if !needName && id.Name != "" {
		return fmt.Errorf("%s identity takes no name, got %q", id.Role, id.Name)
	}
	return nil
}

// Path returns the identity's path below the trust domain, e.g. "node/FR".
func (id ID) Path() string {
	switch id.Role {
	case RoleNode:
		return "node/" + id.Member
	case RoleMemberAdmin:
		return "member-admin/" + id.Member + "/" + id.Name
	default:
		return string(id.Role) + "/" + id.Name
	}
}

// String returns the SPIFFE URI, or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return "spiffe://" + id.TrustDomain + "/" + id.Path()
}

// URL returns the identity as a URL for a certificate's URI SANs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/" + id.Path()}
}

// Parse parses a SPIFFE URI of the fedreport scheme.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return FromURL(u)
}

// FromURL parses a URI SAN.
func FromURL(u *url.URL) (ID, error) {
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return ID{}, fmt.Errorf("identity %q: want spiffe://<trust-domain>/<role>/...", u.String())
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	id := ID{TrustDomain: u.Host, Role: Role(parts[0])}
	switch {
	case id.Role == RoleNode && len(parts) == 2:
		id.Member = parts[1]
	case id.Role == RoleMemberAdmin && len(parts) == 3:
		id.Member, id.Name = parts[1], parts[2]
	case (id.Role == RoleCoordinator || id.Role == RoleOperator || id.Role == RoleAnalyst) && len(parts) == 2:
		id.Name = parts[1]
	default:
		return ID{}, fmt.Errorf("identity %q: path %q is not one of node/<member>, coordinator/<name>, operator/<name>, analyst/<name>, member-admin/<member>/<name>", u.String(), u.Path)
	}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("identity %q: %w", u.String(), err)
	}
	if id.String() != u.String() {
		return ID{}, fmt.Errorf("identity %q is not in canonical form (want %q)", u.String(), id.String())
	}
	return id, nil
}

// FromCertificate returns the identity of a certificate, which must carry
// exactly one URI SAN.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, ErrNoIdentity
	}
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("certificate %q carries %d URI SANs, want exactly one: %w", cert.Subject.CommonName, len(cert.URIs), ErrNoIdentity)
	}
	return FromURL(cert.URIs[0])
}

// FromContext returns the identity of the gRPC peer of ctx, taken only from
// its verified certificate chain. It reports false on connections without
// TLS (the node's local admin socket) or without a verified chain.
func FromContext(ctx context.Context) (ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ID{}, false
	}
	switch info := p.AuthInfo.(type) {
	case AuthInfo:
		return info.id, info.ok
	case credentials.TLSInfo:
		return fromTLSInfo(info)
	}
	return ID{}, false
}
