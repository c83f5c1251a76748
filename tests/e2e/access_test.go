package e2e_test

import (
	"context"
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var (
	accArrests = fedreportv1.Metric_METRIC_ARRESTS
	accPeriod  = &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"}
)

// accFederation is node FR and a coordinator over it that also answers as
// member EU, all with certificates of ca.
type accFederation struct {
	ca    *testpki.CA
	node  string // FR's address
	coord *accCoord
}

func accStartFederation(t *testing.T, ca *testpki.CA, limits grpcsrv.Limits) *accFederation {
	t.Helper()
	me := identity.Coordinator(accTD, "main")
	fr := accNode(t, "FR", ca.ServerTLS(t, accNodeID("FR")), limits)
	c := accCoordinator(t, accCoordinatorConfig{
		serverTLS:       ca.ServerTLS(t, me),
		memberTLS:       func(code string) (*tls.Config, error) { return ca.ClientTLS(t, me, accNodeID(code)), nil },
		memberCode:      "EU",
		memberServerTLS: ca.ServerTLS(t, accNodeID("EU")),
		limits:          limits,
	}, coordinator.Member{Code: "FR", Address: fr})
	return &accFederation{ca: ca, node: fr, coord: c}
}

// accCall is one method of the access matrix, called with a valid request.
type accCall struct {
	listener string // "node", "coordinator" or "member" (the coordinator's member API)
	method   string // full method name
	call     func(context.Context, *grpc.ClientConn) error
}

func accCalls(rollupID string) []accCall {
	health := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	reflect := func(ctx context.Context, c *grpc.ClientConn) error {
		s, err := reflectionpb.NewServerReflectionClient(c).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil && err != io.EOF {
			return err
		}
		_, err = s.Recv()
		_ = s.CloseSend()
		return err
	}
	aggregate := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewAggregationServiceClient(c).Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30"})
		return err
	}
	describe := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewAggregationServiceClient(c).DescribeNode(ctx, &fedreportv1.DescribeNodeRequest{})
		return err
	}
	admin := func(c *grpc.ClientConn) fedreportv1.NodeAdminServiceClient {
		return fedreportv1.NewNodeAdminServiceClient(c)
	}
	coord := func(c *grpc.ClientConn) fedreportv1.CoordinatorServiceClient {
		return fedreportv1.NewCoordinatorServiceClient(c)
	}
	var calls []accCall
	for _, l := range []string{"node", "coordinator", "member"} {
		calls = append(calls,
			accCall{l, healthpb.Health_Check_FullMethodName, health},
			accCall{l, reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName, reflect},
		)
	}
	return append(calls,
		accCall{"node", fedreportv1.AggregationService_Aggregate_FullMethodName, aggregate},
		accCall{"node", fedreportv1.AggregationService_DescribeNode_FullMethodName, describe},
		accCall{"node", fedreportv1.NodeAdminService_IngestRecords_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			s, err := admin(c).IngestRecords(ctx)
			if err != nil {
				return err
			}
			// Send reports only io.EOF when the server has ended the stream;
			// CloseAndRecv returns the status it ended it with.
			if err := s.Send(&fedreportv1.IngestRecordsRequest{Source: "access.csv", Records: []*fedreportv1.Record{
				{RecordId: "FR-access-1", Metric: accArrests, Date: "2020-03-01", Quantity: 1},
			}}); err != nil && err != io.EOF {
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		}},
		// After IngestRecords, so that an allowed caller retracts a stored record.
		accCall{"node", fedreportv1.NodeAdminService_RetractRecords_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := admin(c).RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{"FR-access-1"}})
			return err
		}},
		accCall{"node", fedreportv1.NodeAdminService_ListDisclosures_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := admin(c).ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{})
			return err
		}},
		accCall{"node", fedreportv1.NodeAdminService_GetNodeStats_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := admin(c).GetNodeStats(ctx, &fedreportv1.GetNodeStatsRequest{})
			return err
		}},
		// The copy of the data file holds the member's records.
		accCall{"node", fedreportv1.NodeAdminService_BackupNode_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			s, err := admin(c).BackupNode(ctx, &fedreportv1.BackupNodeRequest{})
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
			}
		}},
		accCall{"coordinator", fedreportv1.CoordinatorService_StartRollup_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := coord(c).StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: accPeriod})
			return err
		}},
		accCall{"coordinator", fedreportv1.CoordinatorService_GetRollup_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := coord(c).GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: rollupID})
			return err
		}},
		accCall{"coordinator", fedreportv1.CoordinatorService_ListRollups_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := coord(c).ListRollups(ctx, &fedreportv1.ListRollupsRequest{})
			return err
		}},
		accCall{"coordinator", fedreportv1.CoordinatorService_ListMembers_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := coord(c).ListMembers(ctx, &fedreportv1.ListMembersRequest{})
			return err
		}},
		accCall{"coordinator", fedreportv1.CoordinatorService_ListOperations_FullMethodName, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := coord(c).ListOperations(ctx, &fedreportv1.ListOperationsRequest{})
			return err
		}},
		accCall{"member", fedreportv1.AggregationService_Aggregate_FullMethodName, aggregate},
		accCall{"member", fedreportv1.AggregationService_DescribeNode_FullMethodName, describe},
	)
}

// TestAccessMatrix calls every method of the node's AggregationService and
// NodeAdminService, the coordinator's CoordinatorService and its member
// AggregationService as every identity of DESIGN.md's access matrix: the
// allowed calls succeed, every other one is PERMISSION_DENIED naming the
// identity and the method.
func TestAccessMatrix(t *testing.T) {
	accLeakCheck(t)
	ca := testpki.New(t, accTD)
	fed := accStartFederation(t, ca, grpcsrv.Limits{})
	ctx := accCtx(t)
	operator := identity.Operator(accTD, "alice")

	// A stored rollup, for GetRollup.
	started, err := fedreportv1.NewCoordinatorServiceClient(accDial(t, fed.coord.addr, ca.ClientTLS(t, operator, identity.Coordinator(accTD, "main")))).
		StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: accPeriod})
	if err != nil {
		t.Fatal(err)
	}
	if st := started.GetRollup().GetState(); st != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("setup rollup: got %v, want COMPLETE", st)
	}

	const (
		aggregate   = fedreportv1.AggregationService_Aggregate_FullMethodName
		describe    = fedreportv1.AggregationService_DescribeNode_FullMethodName
		ingest      = fedreportv1.NodeAdminService_IngestRecords_FullMethodName
		retract     = fedreportv1.NodeAdminService_RetractRecords_FullMethodName
		disclosures = fedreportv1.NodeAdminService_ListDisclosures_FullMethodName
		stats       = fedreportv1.NodeAdminService_GetNodeStats_FullMethodName
		backup      = fedreportv1.NodeAdminService_BackupNode_FullMethodName
		start       = fedreportv1.CoordinatorService_StartRollup_FullMethodName
		get         = fedreportv1.CoordinatorService_GetRollup_FullMethodName
		list        = fedreportv1.CoordinatorService_ListRollups_FullMethodName
		members     = fedreportv1.CoordinatorService_ListMembers_FullMethodName
		operations  = fedreportv1.CoordinatorService_ListOperations_FullMethodName
	)
	// allowed lists, per identity, "listener method" beyond health and
	// reflection, which every authenticated peer may call everywhere.
	for _, tc := range []struct {
		who     string
		id      identity.ID
		allowed []string
	}{
		{"FR's node", accNodeID("FR"), nil},
		{"IT's node", accNodeID("IT"), nil},
		{"a coordinator", identity.Coordinator(accTD, "main"), []string{"node " + aggregate, "node " + describe, "member " + aggregate, "member " + describe}},
		{"an operator", operator, []string{"coordinator " + start, "coordinator " + get, "coordinator " + list, "coordinator " + members, "coordinator " + operations}},
		{"an analyst", identity.Analyst(accTD, "bob"), []string{"coordinator " + get, "coordinator " + list, "coordinator " + members, "coordinator " + operations}},
		{"FR's member admin", identity.MemberAdmin(accTD, "FR", "ops"), []string{
			"node " + aggregate, "node " + describe, "node " + ingest, "node " + retract, "node " + disclosures, "node " + stats, "node " + backup}},
		{"IT's member admin", identity.MemberAdmin(accTD, "IT", "ops"), nil},
	} {
		t.Run(tc.who, func(t *testing.T) {
			conns := map[string]*grpc.ClientConn{
				"node":        accDial(t, fed.node, ca.ClientTLS(t, tc.id, accNodeID("FR"))),
				"coordinator": accDial(t, fed.coord.addr, ca.ClientTLS(t, tc.id, identity.Coordinator(accTD, "main"))),
				"member":      accDial(t, fed.coord.memberAddr, ca.ClientTLS(t, tc.id, accNodeID("EU"))),
			}
			for _, c := range accCalls(started.GetRollup().GetId()) {
				err := c.call(ctx, conns[c.listener])
				open := strings.HasPrefix(c.method, "/grpc.")
				if open || slices.Contains(tc.allowed, c.listener+" "+c.method) {
					if err != nil {
						t.Errorf("%s %s: got %v, want success", c.listener, c.method, err)
					}
					continue
				}
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s %s: got %v, want PermissionDenied", c.listener, c.method, err)
					continue
				}
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.id.String()) || !strings.Contains(msg, c.method) {
					t.Errorf("%s %s: denial %q does not name the identity and the method", c.listener, c.method, msg)
				}
			}
		})
	}
}

// TestHandshakeRefusals: a client without a certificate, with one of
// another CA that carries a valid-looking identity, with an expired one, or
// speaking only TLS 1.2 is refused by the TLS handshake of every real
// listener, before any handler (an authorization error would be
// Unauthenticated or PermissionDenied, not Unavailable). internal/mtls tests
// the same against a bare server.
func TestHandshakeRefusals(t *testing.T) {
	accLeakCheck(t)
	ca := testpki.New(t, accTD)
	fed := accStartFederation(t, ca, grpcsrv.Limits{})
	other := testpki.New(t, accTD)
	op := identity.Operator(accTD, "alice")
	now := time.Now()

	for _, l := range []struct {
		name, addr string
		server     identity.ID
	}{
		{"node", fed.node, accNodeID("FR")},
		{"coordinator", fed.coord.addr, identity.Coordinator(accTD, "main")},
		{"coordinator's member API", fed.coord.memberAddr, accNodeID("EU")},
	} {
		noCert := mtls.ClientConfig(&mtls.Static{Pool: ca.Pool()}, mtls.ExpectID(l.server))
		noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
		tls12 := ca.ClientTLS(t, op, l.server)
		tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		for _, c := range []struct {
			name string
			cfg  *tls.Config
		}{
			{"no client certificate", noCert},
			{"a certificate of another CA with a valid-looking identity", mtls.ClientConfig(&mtls.Static{Cert: other.Cert(t, op), Pool: ca.Pool()}, mtls.ExpectID(l.server))},
			{"an expired certificate", mtls.ClientConfig(&mtls.Static{Cert: ca.CertValid(t, op, now.Add(-2*time.Hour), now.Add(-time.Hour)), Pool: ca.Pool()}, mtls.ExpectID(l.server))},
			{"a TLS 1.2-only client", tls12},
		} {
			_, err := healthpb.NewHealthClient(accDial(t, l.addr, c.cfg)).Check(accCtx(t), &healthpb.HealthCheckRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s, %s: got %v, want the handshake refused (Unavailable)", l.name, c.name, err)
			}
		}
		// The same listener serves a good client.
		if _, err := healthpb.NewHealthClient(accDial(t, l.addr, ca.ClientTLS(t, op, l.server))).Check(accCtx(t), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("%s, a valid client: %v", l.name, err)
		}
	}
}

// TestAnotherMembersNodeAtFRsAddressIsNotCounted runs the real IT node at
// the address registered for FR: the coordinator refuses its certificate
// and FR is missing from the rollup. (coordinator's
// TestRollupRefusesAnotherMembersCertificateAtAMembersAddress checks the
// same with a fake node, and that the impostor's answer is not summed.)
func TestAnotherMembersNodeAtFRsAddressIsNotCounted(t *testing.T) {
	accLeakCheck(t)
	ca := testpki.New(t, accTD)
	me := identity.Coordinator(accTD, "main")
	it := accNode(t, "IT", ca.ServerTLS(t, accNodeID("IT")), grpcsrv.Limits{})
	es := accNode(t, "ES", ca.ServerTLS(t, accNodeID("ES")), grpcsrv.Limits{})
	c := accCoordinator(t, accCoordinatorConfig{
		serverTLS: ca.ServerTLS(t, me),
		memberTLS: func(code string) (*tls.Config, error) { return ca.ClientTLS(t, me, accNodeID(code)), nil },
	}, coordinator.Member{Code: "FR", Address: it}, coordinator.Member{Code: "ES", Address: es})
	resp, err := fedreportv1.NewCoordinatorServiceClient(accDial(t, c.addr, ca.ClientTLS(t, identity.Operator(accTD, "alice"), me))).
		StartRollup(accCtx(t), &fedreportv1.StartRollupRequest{Spec: accPeriod})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetRollup()
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_PARTIAL || !slices.Equal(r.GetMissingMembers(), []string{"FR"}) {
		t.Errorf("got %v missing %v, want PARTIAL missing FR", r.GetState(), r.GetMissingMembers())
	}
	for _, m := range r.GetMembers() {
		if m.GetMember() == "FR" && (m.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK || !strings.Contains(m.GetReason(), "node/FR")) {
			t.Errorf("FR: got %v %q, want refused, naming node/FR", m.GetStatus(), m.GetReason())
		}
	}
}

// TestLimitsOnRealServers: an oversized request, a query listing more
// metrics or dimensions than exist, and a caller over its rate are each
// refused with a code and a message that say what happened.
func TestLimitsOnRealServers(t *testing.T) {
	accLeakCheck(t)
	ca := testpki.New(t, accTD)
	fed := accStartFederation(t, ca, grpcsrv.Limits{Rates: map[string]grpcsrv.Rate{
		fedreportv1.AggregationService_Aggregate_FullMethodName:   {PerSecond: 0.001, Burst: 3},
		fedreportv1.CoordinatorService_StartRollup_FullMethodName: {PerSecond: 0.001, Burst: 2},
	}})
	ctx := accCtx(t)
	me := identity.Coordinator(accTD, "main")
	node := fedreportv1.NewAggregationServiceClient(accDial(t, fed.node, ca.ClientTLS(t, me, accNodeID("FR"))))
	admin := fedreportv1.NewNodeAdminServiceClient(accDial(t, fed.node, ca.ClientTLS(t, identity.MemberAdmin(accTD, "FR", "ops"), accNodeID("FR"))))
	coord := fedreportv1.NewCoordinatorServiceClient(accDial(t, fed.coord.addr, ca.ClientTLS(t, identity.Operator(accTD, "alice"), me)))

	fieldsOf := func(err error) []string {
		var out []string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					out = append(out, v.GetField())
				}
			}
		}
		return out
	}
	six := []fedreportv1.Metric{1, 2, 3, 4, 5, 1}
	sixDims := []fedreportv1.Dimension{2, 3, 4, 5, 2, 3}
	for _, tc := range []struct {
		name   string
		call   func() error
		code   codes.Code
		msg    string
		fields []string
	}{
		{"an Aggregate of 5 MiB", func() error {
			_, err := node.Aggregate(ctx, &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", RollupId: strings.Repeat("x", 5<<20), RollupStartedAt: rollupStarted})
			return err
		}, codes.ResourceExhausted, "larger than max", nil},
		{"an ingest message of 5 MiB", func() error {
			s, err := admin.IngestRecords(ctx)
			if err != nil {
				return err
			}
			_ = s.Send(&fedreportv1.IngestRecordsRequest{Source: strings.Repeat("x", 5<<20)})
			_, err = s.CloseAndRecv()
			return err
		}, codes.ResourceExhausted, "larger than max", nil},
		{"an Aggregate of six metrics", func() error {
			_, err := node.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31", Metrics: six})
			return err
		}, codes.InvalidArgument, "6 metrics listed; at most 5", []string{"metrics"}},
		{"an Aggregate by six dimensions", func() error {
			_, err := node.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31", GroupBy: sixDims})
			return err
		}, codes.InvalidArgument, "6 dimensions listed; at most 5", []string{"group_by"}},
		{"a rollup of six metrics by six dimensions", func() error {
			_, err := coord.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-31", Metrics: six, GroupBy: sixDims}})
			return err
		}, codes.InvalidArgument, "at most 5", []string{"spec.metrics", "spec.group_by"}},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want %v saying %q", tc.name, err, tc.code, tc.msg)
		}
		if tc.fields != nil && !slices.Equal(fieldsOf(err), tc.fields) {
			t.Errorf("%s: got field violations %v, want %v", tc.name, fieldsOf(err), tc.fields)
		}
	}

	// Rates: the refused calls above spent none (the bounds come first);
	// the operator has a burst of 2 rollups, the coordinator 3 Aggregates.
	for i := range 2 {
		if _, err := coord.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: accPeriod}); err != nil {
			t.Fatalf("rollup %d within the burst: %v", i+1, err)
		}
	}
	_, err := coord.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: accPeriod})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "retry in") ||
		!strings.Contains(status.Convert(err).Message(), "operator/alice") {
		t.Errorf("third rollup: got %v, want ResourceExhausted naming the operator and saying when to retry", err)
	}
	// The two rollups spent two of the coordinator's Aggregates on FR.
	if _, err := node.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"}); err != nil {
		t.Fatalf("third Aggregate: %v", err)
	}
	if _, err := node.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("fourth Aggregate: got %v, want ResourceExhausted", err)
	}
	// Another identity is not held back by the coordinator's rate.
	if _, err := fedreportv1.NewAggregationServiceClient(accDial(t, fed.node, ca.ClientTLS(t, identity.MemberAdmin(accTD, "FR", "ops"), accNodeID("FR")))).
		Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"}); err != nil {
		t.Errorf("FR's admin: got %v, want its own rate", err)
	}
}

// rollupStarted is when the tests' rollups started: a coordinator asks
// a member only within a running rollup, named with its start.
var rollupStarted = timestamppb.Now()
