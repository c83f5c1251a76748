package authz_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// peerContext returns a context as grpc-go builds it for a peer whose
// certificate chain was verified.
func peerContext(t *testing.T, cert *x509.Certificate) context.Context {
	t.Helper()
	info := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	return peer.NewContext(t.Context(), &peer.Peer{AuthInfo: info})
}

func TestRulesCheck(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "isa")
	rules := authz.Rules{
		"/fedreport.v1.AggregationService/Aggregate":   authz.Any(authz.Roles(identity.RoleCoordinator), authz.MemberAdminOf("FR")),
		"/fedreport.v1.CoordinatorService/StartRollup": authz.Roles(identity.RoleOperator),
	}
	ctxOf := func(id identity.ID) context.Context { return peerContext(t, ca.Cert(t, id).Leaf) }
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		method string
		want   codes.Code
		msg    string // of a refusal
	}{
		{"a coordinator may aggregate", ctxOf(identity.Coordinator("isa", "main")), "/fedreport.v1.AggregationService/Aggregate", codes.OK, ""},
		{"FR's admin may aggregate FR", ctxOf(identity.MemberAdmin("isa", "FR", "ops")), "/fedreport.v1.AggregationService/Aggregate", codes.OK, ""},
		{"IT's admin may not aggregate FR", ctxOf(identity.MemberAdmin("isa", "IT", "ops")), "/fedreport.v1.AggregationService/Aggregate", codes.PermissionDenied,
			"spiffe://isa/member-admin/IT/ops may not call /fedreport.v1.AggregationService/Aggregate"},
		{"an analyst may not aggregate, and is told which roles may", ctxOf(identity.Analyst("isa", "bob")), "/fedreport.v1.AggregationService/Aggregate", codes.PermissionDenied,
			"spiffe://isa/analyst/bob may not call /fedreport.v1.AggregationService/Aggregate; it needs a coordinator or member-admin certificate"},
		{"an operator may start a rollup", ctxOf(identity.Operator("isa", "alice")), "/fedreport.v1.CoordinatorService/StartRollup", codes.OK, ""},
		{"a node may not start a rollup, and is told which role may", ctxOf(identity.Node("isa", "FR")), "/fedreport.v1.CoordinatorService/StartRollup", codes.PermissionDenied,
			"spiffe://isa/node/FR may not call /fedreport.v1.CoordinatorService/StartRollup; it needs an operator certificate"},
		{"a method not in the table is denied", ctxOf(identity.Operator("isa", "alice")), "/fedreport.v1.CoordinatorService/Unknown", codes.PermissionDenied,
			"spiffe://isa/operator/alice may not call /fedreport.v1.CoordinatorService/Unknown"},
		{"health is open to any authenticated peer", ctxOf(identity.Analyst("isa", "bob")), "/grpc.health.v1.Health/Check", codes.OK, ""},
		{"reflection is open to any authenticated peer", ctxOf(identity.Node("isa", "SN")), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK, ""},
		{"no peer is unauthenticated", t.Context(), "/grpc.health.v1.Health/Check", codes.Unauthenticated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rules.Check(tc.ctx, tc.method)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
			if got := status.Convert(err).Message(); tc.msg != "" && got != tc.msg {
				t.Errorf("message: got %q, want %q", got, tc.msg)
			}
		})
	}
}
