package authz_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
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
	}{
		{"a coordinator may aggregate", ctxOf(identity.Coordinator("isa", "main")), "/fedreport.v1.AggregationService/Aggregate", codes.OK},
		{"FR's admin may aggregate FR", ctxOf(identity.MemberAdmin("isa", "FR", "ops")), "/fedreport.v1.AggregationService/Aggregate", codes.OK},
		{"IT's admin may not aggregate FR", ctxOf(identity.MemberAdmin("isa", "IT", "ops")), "/fedreport.v1.AggregationService/Aggregate", codes.PermissionDenied},
		{"an analyst may not aggregate", ctxOf(identity.Analyst("isa", "bob")), "/fedreport.v1.AggregationService/Aggregate", codes.PermissionDenied},
		{"an operator may start a rollup", ctxOf(identity.Operator("isa", "alice")), "/fedreport.v1.CoordinatorService/StartRollup", codes.OK},
		{"a method not in the table is denied", ctxOf(identity.Operator("isa", "alice")), "/fedreport.v1.CoordinatorService/Unknown", codes.PermissionDenied},
		{"health is open to any authenticated peer", ctxOf(identity.Analyst("isa", "bob")), "/grpc.health.v1.Health/Check", codes.OK},
		{"reflection is open to any authenticated peer", ctxOf(identity.Node("isa", "SN")), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK},
		{"no peer is unauthenticated", t.Context(), "/grpc.health.v1.Health/Check", codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rules.Check(tc.ctx, tc.method)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
			if tc.want == codes.PermissionDenied && !strings.Contains(status.Convert(err).Message(), tc.method) {
				t.Errorf("message %q does not name the method", status.Convert(err).Message())
			}
		})
	}
}
