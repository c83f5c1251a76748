package coordinator

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// serve serves c on 127.0.0.1:0 until the test ends and returns the address.
func serve(t testing.TB, c *testCoordinator) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dial connects to the coordinator at addr as id.
func dial(t testing.TB, ca *testpki.CA, addr string, id identity.ID) *grpc.ClientConn {
	t.Helper()
	tc := ca.ClientTLS(t, id, identity.Coordinator(td, "main"))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestServerAppliesTheAccessMatrix(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{
		aggregate: answers("FR", 5, exact(arrests, 771)),
		describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: "FR", DataVersion: 9, SoftwareVersion: "v1", Kind: "node",
				Policy: &fedreportv1.Policy{MinCellCount: 5}}, nil
		},
	}
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)}))
	addr := serve(t, c)

	operator := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, "alice")))
	analyst := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	node := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Node(td, "FR")))
	foreignCA := testpki.New(t, td)
	foreign := fedreportv1.NewCoordinatorServiceClient(dial(t, foreignCA, addr, identity.Operator(td, "mallory")))
	ctx := t.Context()
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}

	started, err := operator.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
	if err != nil {
		t.Fatalf("operator StartRollup: %v", err)
	}
	r := started.GetRollup()
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || r.GetTotals()[0].GetCount() != 771 {
		t.Errorf("rollup: got %v %v, want COMPLETE arrests=771", r.GetState(), totalsOf(r))
	}
	if got, want := r.GetRequestedBy(), "spiffe://isa/operator/alice"; got != want {
		t.Errorf("requested_by: got %q, want %q", got, want)
	}

	for _, tc := range []struct {
		name   string
		client fedreportv1.CoordinatorServiceClient
		call   func(fedreportv1.CoordinatorServiceClient) error
		want   codes.Code
	}{
		{"an analyst starting a rollup", analyst, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
			return err
		}, codes.PermissionDenied},
		{"a node reading rollups", node, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListRollups(ctx, &fedreportv1.ListRollupsRequest{})
			return err
		}, codes.PermissionDenied},
		{"a certificate from another CA", foreign, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListRollups(ctx, &fedreportv1.ListRollupsRequest{})
			return err
		}, codes.Unavailable},
		{"an analyst reading a rollup", analyst, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: r.GetId()})
			return err
		}, codes.OK},
		{"an analyst listing rollups", analyst, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListRollups(ctx, &fedreportv1.ListRollupsRequest{})
			return err
		}, codes.OK},
		{"an operator listing members", operator, func(c fedreportv1.CoordinatorServiceClient) error {
			_, err := c.ListMembers(ctx, &fedreportv1.ListMembersRequest{})
			return err
		}, codes.OK},
	} {
		if got := status.Code(tc.call(tc.client)); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// The rules also refuse identities of another trust domain (which this
	// CA cannot issue, but a CA bundle might).
	rules := c.rules()
	for method, allow := range rules {
		if allow.Allows(identity.Operator("other", "eve")) {
			t.Errorf("%s allows an operator of another trust domain", method)
		}
	}

	// Errors carry a reason and, for validation, field violations.
	_, err = analyst.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: "r00000099"})
	if got := reasonOf(err); status.Code(err) != codes.NotFound || got != reasonRollupNotFound {
		t.Errorf("unknown rollup: got %v (reason %q), want NotFound with %s", err, got, reasonRollupNotFound)
	}
	_, err = operator.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: "2020-09-30", To: "2020-01-01"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad spec: got %v, want InvalidArgument", err)
	}
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if strings.Join(fields, ",") != "spec.to" {
		t.Errorf("field violations: got %v, want [spec.to]", fields)
	}

	// ListMembers probes the member and reports what it said, never counts.
	members, err := analyst.ListMembers(ctx, &fedreportv1.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(members.GetMembers()) != 1 {
		t.Fatalf("members: got %d, want 1", len(members.GetMembers()))
	}
	m := members.GetMembers()[0]
	if !m.GetReachable() || m.GetLastDataVersion() != 9 || m.GetSoftwareVersion() != "v1" || m.GetPolicy().GetMinCellCount() != 5 || m.GetLastContact() == nil {
		t.Errorf("FR: got %v, want reachable, data version 9, v1, k=5, a last contact", m)
	}

	// Health and reflection are open to any authenticated peer.
	hc := healthpb.NewHealthClient(dial(t, ca, addr, identity.Node(td, "IT")))
	hr, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: fedreportv1.CoordinatorService_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: got %v, %v; want SERVING", hr, err)
	}
}

// reasonOf returns the ErrorInfo reason of a status error.
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

func TestListMembersReportsUnreachableMembers(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: "FR"}, nil
		}})},
		Member{"IT", closedAddr(t)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), &fakeNode{describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: "SG"}, nil
		}})},
	))
	first, err := c.ListMembers(t.Context(), &fedreportv1.ListMembersRequest{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.ListMembers(t.Context(), &fedreportv1.ListMembersRequest{PageSize: 2, PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if second.GetNextPageToken() != "" {
		t.Errorf("last page token: got %q, want empty", second.GetNextPageToken())
	}
	ms := append(first.GetMembers(), second.GetMembers()...)
	if len(ms) != 3 {
		t.Fatalf("members: got %d, want 3", len(ms))
	}
	if fr := ms[0]; !fr.GetReachable() || fr.GetLastError() != "" {
		t.Errorf("FR: got %v, want reachable", fr)
	}
	if it := ms[1]; it.GetReachable() || !strings.Contains(it.GetLastError(), "connection refused") || it.GetAddress() == "" {
		t.Errorf("IT: got %v, want unreachable with a reason", it)
	}
	if es := ms[2]; es.GetReachable() || !strings.Contains(es.GetLastError(), `"SG"`) {
		t.Errorf("ES: got %v, want not reachable: it describes itself as SG", es)
	}
}

func TestServeStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, lis) }()

	hc := healthpb.NewHealthClient(dial(t, ca, lis.Addr().String(), identity.Analyst(td, "bob")))
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serve: got %v, want nil after its context ended", err)
	}
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("health after stop: got %v, want Unavailable", err)
	}
}
