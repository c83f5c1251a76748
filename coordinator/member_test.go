package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

const (
	month   = fedreportv1.Dimension_DIMENSION_MONTH
	offence = fedreportv1.Dimension_DIMENSION_OFFENCE
	channel = fedreportv1.Dimension_DIMENSION_CHANNEL
)

// testConfigAs is testConfig for the coordinator named name.
func testConfigAs(t *testing.T, ca *testpki.CA, name string, members ...Member) Config {
	t.Helper()
	me := identity.Coordinator(td, name)
	return Config{
		DataPath: filepath.Join(t.TempDir(), name+".db"),
		Members:  members,
		MemberTLS: func(code string) (*tls.Config, error) {
			return ca.ClientTLS(t, me, identity.Node(td, code)), nil
		},
		ServerTLS:   ca.ServerTLS(t, me),
		TrustDomain: td,
		Version:     "test",
	}
}

// monthlyNode is a node holding true arrest counts per month (YYYY-MM) that
// answers as a real node does: suppressing values 1..k-1, leaving zero cells
// out of grouped answers. down makes it refuse.
func monthlyNode(code string, k uint32, dataVersion uint64, counts map[string]uint64, earliest string, dims ...fedreportv1.Dimension) *fakeNode {
	cell := func(v uint64) *fedreportv1.Cell {
		if v > 0 && v < uint64(k) {
			return suppressed(arrests, uint64(k))
		}
		return exact(arrests, v)
	}
	return &fakeNode{
		aggregate: func(_ context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
			resp := &fedreportv1.AggregateResponse{Member: code, MinCellCount: k, DataVersion: dataVersion}
			if slices.Contains(req.GetGroupBy(), month) {
				for _, m := range slices.Sorted(maps.Keys(counts)) {
					if v := counts[m]; v > 0 && m >= req.GetFrom()[:7] && m <= req.GetTo()[:7] {
						resp.Cells = append(resp.Cells, withMonth(cell(v), m))
					}
				}
				return resp, nil
			}
			var sum uint64
			for _, v := range counts {
				sum += v
			}
			resp.Cells = []*fedreportv1.Cell{cell(sum)}
			return resp, nil
		},
		describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: code, Kind: "node", DataVersion: dataVersion, SoftwareVersion: "node-test",
				Policy: &fedreportv1.Policy{MinCellCount: k, AllowedDimensions: dims, EarliestDate: earliest}}, nil
		},
	}
}

// serveMemberUntil serves c's member API on 127.0.0.1:0 until the test ends.
func serveMemberUntil(t *testing.T, c *testCoordinator) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.ServeMember(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve member: %v", err)
		}
	})
	return lis.Addr().String()
}

func TestTwoLevelFederationTotalsEqualTheFlatRollup(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := monthlyNode("FR", 5, 100, map[string]uint64{"2020-01": 12, "2020-02": 3, "2020-03": 40}, "2010-01-01", month, offence)
	it := monthlyNode("IT", 3, 20, map[string]uint64{"2020-01": 2, "2020-02": 7}, "2012-01-01", month, channel, offence)
	es := monthlyNode("ES", 5, 9, map[string]uint64{"2020-01": 9, "2020-03": 1}, "2000-01-01")
	var itDown atomic.Bool
	itAggregate := it.aggregate
	it.aggregate = func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		if itDown.Load() {
			return nil, status.Error(codes.FailedPrecondition, "maintenance")
		}
		return itAggregate(ctx, req)
	}
	frAddr := startNode(t, ca, identity.Node(td, "FR"), fr)
	itAddr := startNode(t, ca, identity.Node(td, "IT"), it)
	esAddr := startNode(t, ca, identity.Node(td, "ES"), es)

	regionalCfg := testConfigAs(t, ca, "eu", Member{"FR", frAddr}, Member{"IT", itAddr})
	regionalCfg.MemberCode = "EU"
	regionalCfg.MemberServerTLS = ca.ServerTLS(t, identity.Node(td, "EU"))
	regional := newCoordinator(t, ca, regionalCfg)
	euAddr := serveMemberUntil(t, regional)

	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}, Member{"ES", esAddr}))
	flat := newCoordinator(t, ca, testConfigAs(t, ca, "flat", Member{"FR", frAddr}, Member{"IT", itAddr}, Member{"ES", esAddr}))

	for _, spec := range []*fedreportv1.RollupSpec{
		arrestsSpec,
		{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}, GroupBy: []fedreportv1.Dimension{month}},
		{From: "2020-02-01", To: "2020-03-31", Metrics: []fedreportv1.Metric{arrests}, GroupBy: []fedreportv1.Dimension{month}},
	} {
		want, err := flat.StartRollup(t.Context(), spec, requester)
		if err != nil {
			t.Fatal(err)
		}
		got, err := top.StartRollup(t.Context(), spec, requester)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || want.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
			t.Fatalf("states: top %v (%s), flat %v; want both COMPLETE", got.GetState(), memberStatuses(got), want.GetState())
		}
		if !slices.EqualFunc(got.GetTotals(), want.GetTotals(), func(a, b *fedreportv1.Cell) bool { return proto.Equal(a, b) }) {
			t.Errorf("spec %v: two-level totals %v, flat totals %v", spec, totalsOf(got), totalsOf(want))
		}
		eu := got.GetMembers()[0]
		if eu.GetMinCellCount() != 5 || eu.GetDataVersion() != 120 {
			t.Errorf("EU answer: got k=%d data version %d, want the largest k 5 and the sum 120", eu.GetMinCellCount(), eu.GetDataVersion())
		}
		for _, c := range eu.GetCells() {
			if c.GetMember() != "" {
				t.Errorf("EU cell names member %q; cells carry no member unless grouped by it", c.GetMember())
			}
		}
	}
	if got := totalsOf(mustLast(t, top)); !slices.Equal(got, []string{"arrests/2020-02=7+1s[8,11]", "arrests/2020-03=40+1s[41,44]"}) {
		t.Errorf("grouped totals: got %v", got)
	}

	// The regional coordinator stored each answer as a rollup of its own,
	// requested by the top coordinator.
	page, err := regional.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetRollups()) != 3 {
		t.Fatalf("regional rollups: got %d, want 3", len(page.GetRollups()))
	}
	if got, want := page.GetRollups()[0].GetRequestedBy(), "spiffe://isa/coordinator/top"; got != want {
		t.Errorf("regional requested_by: got %q, want %q", got, want)
	}

	// A partial regional rollup never travels up as the member's answer.
	itDown.Store(true)
	r, err := top.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberStatuses(r), "EU=refused ES=ok"; got != want {
		t.Errorf("with a regional member down: got %q, want %q", got, want)
	}
	if reason := r.GetMembers()[0].GetReason(); !strings.Contains(reason, "FAILED_PRECONDITION") || !strings.Contains(reason, "partial") || !strings.Contains(reason, "IT (refused: FAILED_PRECONDITION: maintenance)") {
		t.Errorf("EU reason: got %q, want it to say the regional rollup was partial and who is missing why", reason)
	}
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_PARTIAL || !slices.Equal(totalsOf(r), []string{"arrests=10"}) {
		t.Errorf("top rollup: got %v %v, want PARTIAL with only ES's 10", r.GetState(), totalsOf(r))
	}

	// The top coordinator learns the regional coordinator's combined policy.
	members, err := top.ListMembers(t.Context(), &fedreportv1.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	euMember := members.GetMembers()[0]
	wantPolicy := &fedreportv1.Policy{MinCellCount: 5, AllowedDimensions: []fedreportv1.Dimension{month, offence}, EarliestDate: "2012-01-01"}
	if !euMember.GetReachable() || !proto.Equal(euMember.GetPolicy(), wantPolicy) || euMember.GetSoftwareVersion() != "test" {
		t.Errorf("EU as a member: got %v, want reachable with policy %v", euMember, wantPolicy)
	}
}

// mustLast returns the newest rollup of c.
func mustLast(t *testing.T, c *testCoordinator) *fedreportv1.Rollup {
	t.Helper()
	page, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{PageSize: 1})
	if err != nil || len(page.GetRollups()) != 1 {
		t.Fatalf("newest rollup: %v, %v", page, err)
	}
	return page.GetRollups()[0]
}

func TestMemberAPIAnswersOnlyCoordinators(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))})
	cfg := testConfigAs(t, ca, "eu", Member{"FR", fr})
	cfg.MemberCode = "EU"
	cfg.MemberServerTLS = ca.ServerTLS(t, identity.Node(td, "EU"))
	c := newCoordinator(t, ca, cfg)
	addr := serveMemberUntil(t, c)

	client := func(id identity.ID) fedreportv1.AggregationServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, id, identity.Node(td, "EU")))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return fedreportv1.NewAggregationServiceClient(conn)
	}
	req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}, RollupId: "r00000007", RollupStartedAt: rollupStarted}
	for _, id := range []identity.ID{identity.Operator(td, "alice"), identity.Node(td, "FR"), identity.MemberAdmin(td, "EU", "admin")} {
		if _, err := client(id).Aggregate(t.Context(), req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s Aggregate: got %v, want PermissionDenied", id, err)
		}
	}
	parent := client(identity.Coordinator(td, "top"))
	resp, err := parent.Aggregate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := &fedreportv1.AggregateResponse{Member: "EU", MinCellCount: 5, DataVersion: 7, Cells: []*fedreportv1.Cell{exact(arrests, 10)}, RollupId: mustLast(t, c).GetId()}
	if !proto.Equal(resp, want) {
		t.Errorf("Aggregate: got %v, want %v", resp, want)
	}
	d, err := parent.DescribeNode(t.Context(), &fedreportv1.DescribeNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetMember() != "EU" || d.GetKind() != KindCoordinator {
		t.Errorf("DescribeNode: got %v, want member EU, kind coordinator", d)
	}
	_, err = parent.Aggregate(t.Context(), &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2019-01-01", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MEMBER}})
	var fields []string
	for _, det := range status.Convert(err).Details() {
		if br, ok := det.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if status.Code(err) != codes.InvalidArgument || !slices.Equal(fields, []string{"to", "group_by[0]"}) {
		t.Errorf("a bad request: got %v with fields %v, want InvalidArgument on to and group_by[0]", err, fields)
	}
}

// As a member, a coordinator refuses totals that would not fit one answer,
// as a node does, and says what to ask instead.
func TestMemberAPIRefusesAnAnswerOverTheLimit(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	counts := map[string]uint64{}
	var cells []*fedreportv1.Cell
	for m := 1; m <= 9; m++ {
		month := fmt.Sprintf("2020-%02d", m)
		counts[month] = uint64(10 * m)
		cells = append(cells, withMonth(exact(arrests, uint64(10*m)), month))
	}
	fr := startNode(t, ca, identity.Node(td, "FR"), monthlyNode("FR", 5, 7, counts, "", month))
	cfg := testConfigAs(t, ca, "eu", Member{"FR", fr})
	cfg.MemberCode = "EU"
	cfg.MemberServerTLS = ca.ServerTLS(t, identity.Node(td, "EU"))
	const limit = 64
	cfg.MaxAnswerBytes = limit
	c := newCoordinator(t, ca, cfg)
	addr := serveMemberUntil(t, c)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, identity.Coordinator(td, "top"), identity.Node(td, "EU")))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	parent := fedreportv1.NewAggregationServiceClient(conn)

	req := &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}}
	if resp, err := parent.Aggregate(t.Context(), req); err != nil || len(resp.GetCells()) != 1 || resp.GetCells()[0].GetCount() != 450 {
		t.Fatalf("ungrouped: %v, %v", resp, err)
	}
	req.GroupBy = []fedreportv1.Dimension{month}
	_, err = parent.Aggregate(t.Context(), req)
	wire, _ := proto.Marshal(&fedreportv1.AggregateResponse{Cells: cells})
	want := fmt.Sprintf("the answer would be 9 cells in %d bytes, over the limit of %d bytes for one answer (one gRPC message); ask for a shorter period (from, to) or group by fewer dimensions", len(wire), limit)
	reason, fields := refusal(err)
	if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != want || reason != "ANSWER_TOO_LARGE" || !slices.Equal(fields, []string{"group_by"}) {
		t.Errorf("by month: got %v (reason %q, fields %v), want RESOURCE_EXHAUSTED %q", err, reason, fields, want)
	}
}

func TestOpenRefusesItsOwnMemberCodeAsAMember(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"EU", "127.0.0.1:7443"})
	cfg.MemberCode = "EU"
	if c, err := Open(cfg); err == nil {
		_ = c.Close()
		t.Error("Open: got nil, want an error")
	}
	cfg.MemberCode = "eu"
	if c, err := Open(cfg); err == nil {
		_ = c.Close()
		t.Error("Open with a lower-case member code: got nil, want an error")
	}
	cfg = testConfig(t, ca, Member{"FR", "127.0.0.1:7443"})
	c := newCoordinator(t, ca, cfg)
	if err := c.ServeMember(t.Context(), nil); err == nil {
		t.Error("ServeMember without a member code: got nil, want an error")
	}
	if _, err := c.Aggregate(t.Context(), &fedreportv1.AggregateRequest{}, "x"); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("Aggregate without a member code: got %v, want an error", err)
	}
}

// regionalEU opens coordinator eu over members, answering as member EU on
// a member API that serves until the test ends; it returns the coordinator
// and the member API's address.
func regionalEU(t *testing.T, ca *testpki.CA, members ...Member) (*testCoordinator, string) {
	t.Helper()
	cfg := testConfigAs(t, ca, "eu", members...)
	cfg.MemberCode = "EU"
	cfg.MemberServerTLS = ca.ServerTLS(t, identity.Node(td, "EU"))
	c := newCoordinator(t, ca, cfg)
	return c, serveMemberUntil(t, c)
}

// asTop is coordinator top's client of the member API of EU at addr.
func asTop(t *testing.T, ca *testpki.CA, addr string) fedreportv1.AggregationServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, identity.Coordinator(td, "top"), identity.Node(td, "EU")))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return fedreportv1.NewAggregationServiceClient(conn)
}

// refusal returns the ErrorInfo reason and the BadRequest fields of err's status.
func refusal(err error) (reason string, fields []string) {
	for _, det := range status.Convert(err).Details() {
		switch d := det.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return reason, fields
}

// A regional coordinator refuses what the policy it advertises does not
// allow as a node would, with the node's code, reason and field, and before
// it asks any member: else the members that allow the request disclose
// their cells, into their logs and its rollups, for an answer the others'
// refusal then withholds.
func TestMemberAPIRefusesOutsideItsPolicyBeforeAskingAnyMember(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	victimAge := fedreportv1.Dimension_DIMENSION_VICTIM_AGE
	fr := monthlyNode("FR", 5, 1, map[string]uint64{"2020-01": 12}, "2010-01-01", month, offence, channel)
	it := monthlyNode("IT", 5, 2, map[string]uint64{"2020-01": 9}, "2012-01-01", month, offence, channel, victimAge)
	eu, euAddr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)}, Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)})
	parent := asTop(t, ca, euAddr)

	for _, tt := range []struct {
		name                string
		req                 *fedreportv1.AggregateRequest
		reason, field, says string
	}{
		{"a dimension one member does not allow",
			&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{month, victimAge}},
			"DIMENSION_NOT_ALLOWED", "group_by", "grouping by victim_age (allowed: month,offence,channel)"},
		{"a period before one member's earliest date",
			&fedreportv1.AggregateRequest{From: "2011-06-01", To: "2020-09-30"},
			"PERIOD_NOT_ALLOWED", "from", "only from 2012-01-01 on"},
	} {
		_, err := parent.Aggregate(t.Context(), tt.req)
		reason, fields := refusal(err)
		if status.Code(err) != codes.FailedPrecondition || reason != tt.reason || !slices.Equal(fields, []string{tt.field}) || !strings.Contains(status.Convert(err).Message(), tt.says) {
			t.Errorf("%s: got %v (reason %q, fields %v), want FAILED_PRECONDITION %s on %s saying %q", tt.name, err, reason, fields, tt.reason, tt.field, tt.says)
		}
	}

	// As `fedreport rollup --by victim_age` at the top coordinator asks.
	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}))
	r, err := top.StartRollup(t.Context(), &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{victimAge}}, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GetMembers()[0]; got.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_REFUSED || !strings.Contains(got.GetReason(), "does not allow grouping by victim_age") {
		t.Errorf("EU at the top: got %v %q, want refused for victim_age", got.GetStatus(), got.GetReason())
	}

	if n := len(fr.requests()) + len(it.requests()); n != 0 {
		t.Errorf("members were asked %d times, want never", n)
	}
	page, err := eu.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(page.GetRollups()); n != 0 {
		t.Errorf("EU stored %d rollups, want none", n)
	}
}

// A regional coordinator's refusal of its incomplete rollup gives each
// missing member's own reason, which the coordinator that asked has no
// other way to read, names the rollup as the regional coordinator's, whose
// ids are not the asking coordinator's, and stays bounded however long
// the members' reasons are.
func TestRegionalRefusalGivesEachMissingMembersReason(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := monthlyNode("FR", 5, 1, map[string]uint64{"2020-01": 12}, "", month)
	it := monthlyNode("IT", 5, 2, map[string]uint64{"2020-01": 9}, "", month)
	it.aggregate = func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		return nil, status.Error(codes.FailedPrecondition, "restoring from backup until 18:00 UTC")
	}
	es := monthlyNode("ES", 5, 3, map[string]uint64{"2020-01": 4}, "", month)
	es.aggregate = func(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		return nil, status.Error(codes.Unavailable, "draining "+strings.Repeat("and more ", 200))
	}
	eu, euAddr := regionalEU(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)},
		Member{"IT", startNode(t, ca, identity.Node(td, "IT"), it)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), es)})
	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}))

	r, err := top.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	euID := mustLast(t, eu).GetId()
	reason := r.GetMembers()[0].GetReason()
	for _, want := range []string{
		"EU's rollup " + euID + " is partial",
		"IT (refused: FAILED_PRECONDITION: restoring from backup until 18:00 UTC)",
		"ES (unreachable: after one retry: draining and more",
	} {
		if !strings.Contains(reason, want) {
			t.Errorf("EU's reason at the top: got %q, want it to contain %q", reason, want)
		}
	}
	_, err = asTop(t, ca, euAddr).Aggregate(t.Context(), &fedreportv1.AggregateRequest{RollupId: "direct-1", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}})
	if msg := status.Convert(err).Message(); len(msg) > maxReasonLen+len("…") || !strings.HasPrefix(msg, "EU's rollup ") {
		t.Errorf("EU's refusal: got %d bytes %q, want at most %d naming EU's rollup", len(msg), msg, maxReasonLen+len("…"))
	}
}

// A coordinator answering as a member checks requests against its members'
// last known policies, without asking them to describe themselves again for
// every answer; a request those policies refuse is checked once more against
// what the members say now, so a relaxed policy is not refused on stale
// knowledge.
func TestMemberAPIAsksForPoliciesOnlyWhenUnknownOrRefusing(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	victimAge := fedreportv1.Dimension_DIMENSION_VICTIM_AGE
	fr := monthlyNode("FR", 5, 1, map[string]uint64{"2020-01": 12}, "", month)
	var (
		mu        sync.Mutex
		describes int
		dims      = []fedreportv1.Dimension{month}
	)
	describe := fr.describe
	fr.describe = func(ctx context.Context, req *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		describes++
		d, err := describe(ctx, req)
		d.GetPolicy().AllowedDimensions = slices.Clone(dims)
		return d, err
	}
	asked := func() int { mu.Lock(); defer mu.Unlock(); return describes }
	_, euAddr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	parent := asTop(t, ca, euAddr)
	byMonth := &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{month}}
	byAge := &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{victimAge}}

	for i := range 3 {
		if _, err := parent.Aggregate(t.Context(), byMonth); err != nil {
			t.Fatalf("answer %d by month: %v", i, err)
		}
	}
	if n := asked(); n != 1 {
		t.Errorf("three answers asked FR to describe itself %d times, want once (its policy was unknown at first)", n)
	}
	before := asked()
	if _, err := parent.Aggregate(t.Context(), byAge); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("by victim_age with FR not allowing it: got %v, want FAILED_PRECONDITION", err)
	}
	if n := asked() - before; n != 1 {
		t.Errorf("a refusal asked FR %d times, want once, to check the refusal against its policy now", n)
	}
	if n := len(fr.requests()); n != 3 {
		t.Errorf("FR was asked to aggregate %d times, want 3 (never for the refused request)", n)
	}

	mu.Lock()
	dims = []fedreportv1.Dimension{month, victimAge}
	mu.Unlock()
	// The fake FR answers no victim_age cells; what matters is that it is
	// asked now.
	_, err := parent.Aggregate(t.Context(), byAge)
	if reason, _ := refusal(err); reason == "DIMENSION_NOT_ALLOWED" || len(fr.requests()) != 4 {
		t.Errorf("by victim_age once FR allows it: got %v, FR asked %d times; want FR asked a fourth time", err, len(fr.requests()))
	}
}

// A regional coordinator's rollup that answered the top coordinator keeps
// the top's rollup id, so that the regional history leads to the result an
// answer went into: in the FULL and the BASIC view as served, since BASIC
// drops only the members. A rollup started at the regional coordinator
// itself names none, and a rollup_id no node would take is refused as a
// node refuses it, before any member is asked.
func TestRegionalRollupNamesTheCallersRollup(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := monthlyNode("FR", 5, 1, map[string]uint64{"2020-01": 12}, "", month)
	eu, euAddr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}))

	topRollup, err := top.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if topRollup.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || topRollup.GetCallerRollupId() != "" {
		t.Fatalf("top rollup: got %v, caller rollup %q; want COMPLETE, started here", topRollup.GetState(), topRollup.GetCallerRollupId())
	}
	euRollup := mustLast(t, eu)
	conn, err := grpc.NewClient(serve(t, eu), grpc.WithTransportCredentials(credentials.NewTLS(ca.ClientTLS(t, identity.Analyst(td, "bob"), identity.Coordinator(td, "eu")))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	analyst := fedreportv1.NewCoordinatorServiceClient(conn)
	for _, view := range []fedreportv1.RollupView{fedreportv1.RollupView_ROLLUP_VIEW_FULL, fedreportv1.RollupView_ROLLUP_VIEW_BASIC} {
		got, err := analyst.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: euRollup.GetId(), View: view})
		if err != nil {
			t.Fatal(err)
		}
		if r := got.GetRollup(); r.GetCallerRollupId() != topRollup.GetId() || r.GetRequestedBy() != "spiffe://isa/coordinator/top" {
			t.Errorf("EU's rollup %s in view %v: got caller rollup %q requested by %q, want %q by spiffe://isa/coordinator/top",
				euRollup.GetId(), view, r.GetCallerRollupId(), r.GetRequestedBy(), topRollup.GetId())
		}
	}

	own, err := eu.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if own.GetCallerRollupId() != "" {
		t.Errorf("a rollup started at EU: got caller rollup %q, want none", own.GetCallerRollupId())
	}

	asked := len(fr.requests())
	for _, id := range []string{"r 1", "r1\n", "r\u00e91", strings.Repeat("r", grpcsrv.MaxRollupIDLen+1)} {
		_, err := asTop(t, ca, euAddr).Aggregate(t.Context(), &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests}, RollupId: id, RollupStartedAt: rollupStarted})
		if _, fields := refusal(err); status.Code(err) != codes.InvalidArgument || !slices.Equal(fields, []string{"rollup_id"}) {
			t.Errorf("rollup_id %q: got %v (fields %v), want INVALID_ARGUMENT on rollup_id", id, err, fields)
		}
	}
	if n := len(fr.requests()) - asked; n != 0 {
		t.Errorf("FR was asked %d times for refused rollup ids, want never", n)
	}
	if got := mustLast(t, eu).GetId(); got != own.GetId() {
		t.Errorf("EU's newest rollup: got %s, want %s (none stored for refused rollup ids)", got, own.GetId())
	}
}

// The top coordinator records beside a regional member's result which of
// the regional coordinator's rollups answered, and beside a node's none.
// The id is the member's word: a node that sends one anyway has it kept
// printable and bounded, and its cells are summed as they would be
// without it.
func TestTopRecordsWhichRegionalRollupAnswered(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := monthlyNode("FR", 5, 4, map[string]uint64{"2020-01": 12}, "", month)
	eu, euAddr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	es := startNode(t, ca, identity.Node(td, "ES"), &fakeNode{aggregate: answers("ES", 5, exact(arrests, 10))})
	wordy := "r7\x00\n" + strings.Repeat("é", maxReasonLen)
	it := &fakeNode{aggregate: func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		resp, err := answers("IT", 5, exact(arrests, 100))(ctx, req)
		resp.RollupId = wordy
		return resp, err
	}}
	itAddr := startNode(t, ca, identity.Node(td, "IT"), it)
	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}, Member{"ES", es}, Member{"IT", itAddr}))

	r, err := top.StartRollup(t.Context(), arrestsSpec, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberStatuses(r), "EU=ok ES=ok IT=ok"; got != want || !slices.Equal(totalsOf(r), []string{"arrests=122"}) {
		t.Fatalf("top rollup: got %s, totals %v; want %s and arrests=122", got, totalsOf(r), want)
	}
	euRollup := mustLast(t, eu)
	if euRollup.GetCallerRollupId() != r.GetId() {
		t.Fatalf("EU's newest rollup %s answered %q, want %s", euRollup.GetId(), euRollup.GetCallerRollupId(), r.GetId())
	}
	if got := r.GetMembers()[0].GetMemberRollupId(); got != euRollup.GetId() {
		t.Errorf("EU's result at the top: got member rollup %q, want EU's rollup %s", got, euRollup.GetId())
	}
	if got := r.GetMembers()[1].GetMemberRollupId(); got != "" {
		t.Errorf("ES's result at the top: got member rollup %q, want none from a node", got)
	}
	got := r.GetMembers()[2].GetMemberRollupId()
	if len(got) > maxReasonLen+len("…") || strings.ContainsFunc(got, unicode.IsControl) || !strings.HasPrefix(got, "r7  é") {
		t.Errorf("IT's own rollup_id at the top: got %d bytes %q, want it printable, at most %d bytes", len(got), got, maxReasonLen+len("…"))
	}
}

// ListMembers says which members are regional coordinators and which are
// nodes, as each last described itself; a member never reached has said
// nothing, and a kind no fedreport member sends is kept printable and
// bounded.
func TestListMembersSaysWhichMembersAreCoordinators(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := monthlyNode("FR", 5, 1, map[string]uint64{"2020-01": 12}, "", month)
	_, euAddr := regionalEU(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	es := startNode(t, ca, identity.Node(td, "ES"), monthlyNode("ES", 5, 3, map[string]uint64{"2020-01": 4}, "", month))
	odd := monthlyNode("IT", 5, 2, map[string]uint64{"2020-01": 9}, "", month)
	describe := odd.describe
	odd.describe = func(ctx context.Context, req *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
		d, err := describe(ctx, req)
		d.Kind = "relay\n" + strings.Repeat("x", 2*maxReasonLen)
		d.SoftwareVersion = "v1\x1b[2J" + strings.Repeat("y", 2*maxReasonLen)
		d.Policy.EarliestDate = "2020-01-01\x1b[2J" + strings.Repeat("z", 2*maxReasonLen)
		return d, err
	}
	it := startNode(t, ca, identity.Node(td, "IT"), odd)
	top := newCoordinator(t, ca, testConfigAs(t, ca, "top", Member{"EU", euAddr}, Member{"ES", es}, Member{"IT", it}, Member{"GB", closedAddr(t)}))

	page, err := top.ListMembers(t.Context(), &fedreportv1.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, m := range page.GetMembers() {
		kinds = append(kinds, m.GetCode()+"="+m.GetKind())
	}
	if want := []string{"EU=coordinator", "ES=node"}; !slices.Equal(kinds[:2], want) || kinds[3] != "GB=" {
		t.Errorf("kinds: got %q, want %q then IT's, then GB= (never reached)", kinds, want)
	}
	if got := page.GetMembers()[2].GetKind(); len(got) > maxReasonLen+len("…") || !strings.HasPrefix(got, "relay x") {
		t.Errorf("IT's kind: got %d bytes %q, want it printable and at most %d bytes", len(got), got, maxReasonLen+len("…"))
	}
	// The software version, also the member's word, is shown as carefully.
	if got := page.GetMembers()[2].GetSoftwareVersion(); len(got) > maxReasonLen+len("…") || !strings.HasPrefix(got, "v1 [2J") {
		t.Errorf("IT's software version: got %d bytes %q, want it printable and at most %d bytes", len(got), got, maxReasonLen+len("…"))
	}
	if got := page.GetMembers()[2].GetPolicy().GetEarliestDate(); len(got) > maxReasonLen+len("…") || !strings.HasPrefix(got, "2020-01-01 [2J") {
		t.Errorf("IT's earliest date: got %d bytes %q, want it printable and at most %d bytes", len(got), got, maxReasonLen+len("…"))
	}
}

// rollupStarted is when the tests' rollups started: a coordinator asks
// a member only within a running rollup, named with its start.
var rollupStarted = timestamppb.Now()
