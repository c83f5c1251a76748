package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Federation of federations (DESIGN.md "Parts"): a coordinator with a member
// code also serves AggregationService, so a regional coordinator can be one
// member of a larger one. It answers an Aggregate by running a rollup over
// its own members, stored like any other with requested_by set to the
// calling coordinator and caller_rollup_id to the calling coordinator's
// rollup, and passes the totals up as its cells.
//
// The upstream coordinator dials a member expecting the server certificate
// node/<code>; the coordinator's own listener presents coordinator/<name>.
// So the member API is served on a second listener (ServeMember) with
// Config.MemberServerTLS, which presents a node certificate for MemberCode.

// KindCoordinator is DescribeNodeResponse.kind for a coordinator acting as a member.
const KindCoordinator = "coordinator"

// aggregateReserve is the part of the caller's remaining time an Aggregate
// keeps for storing the rollup and sending the answer: the member timeout of
// the rollup it runs is cut to the rest, so the answer arrives in time.
const aggregateReserve = 10 // percent

// IncompleteError is returned by Aggregate when the rollup it ran is not
// COMPLETE: a partial sum must never travel up as the member's answer.
type IncompleteError struct {
	// Member is the member code the coordinator answers as.
	Member string
	// Rollup is the stored rollup, for its id, state and missing members.
	Rollup *fedreportv1.Rollup
}

// Error implements error. The coordinator that asked stores it as this
// member's reason, and has rollups of its own with ids like this one's: the
// message names the rollup as Member's, and gives each missing member's
// own reason, which the asker cannot read elsewhere. It is bounded as a
// member's reason is (clean).
func (e *IncompleteError) Error() string {
	r := e.Rollup
	msg := fmt.Sprintf("%s's rollup %s is %s", e.Member, r.GetId(), rollupStateName(r.GetState()))
	var missing []string
	for _, m := range r.GetMembers() {
		if m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			missing = append(missing, fmt.Sprintf("%s (%s: %s)", m.GetMember(), memberStatusName(m.GetStatus()), m.GetReason()))
		}
	}
	if len(missing) > 0 {
		msg += "; missing: " + strings.Join(missing, ", ")
	} else if reason := r.GetFailureReason(); reason != "" {
		msg += ": " + reason
	}
	return clean(msg + "; a coordinator answers as a member only when every one of its members answered")
}

// aggregateSpec turns an AggregateRequest into the spec of the rollup that
// answers it. Field names in violations are the request's (from, group_by[0]).
// The request's rollup_id, which the rollup keeps as caller_rollup_id, must
// be an id as a node checks it (grpcsrv.RollupIDProblem).
func aggregateSpec(req *fedreportv1.AggregateRequest) (*fedreportv1.RollupSpec, error) {
	spec := &fedreportv1.RollupSpec{
		From:    req.GetFrom(),
		To:      req.GetTo(),
		Metrics: slices.Clone(req.GetMetrics()),
		GroupBy: slices.Clone(req.GetGroupBy()),
	}
	verr := &ValidationError{}
	if err := ValidateSpec(spec); err != nil {
		var v *ValidationError
		if !errors.As(err, &v) {
			return nil, err
		}
		for _, fv := range v.Violations {
			verr.add(strings.TrimPrefix(fv.Field, "spec."), "%s", fv.Description)
		}
	}
	for i, d := range spec.GetGroupBy() {
		if d == fedreportv1.Dimension_DIMENSION_MEMBER {
			// The coordinator answers for its members as one member; a split
			// by member belongs to the coordinator that asks.
			verr.add(fmt.Sprintf("group_by[%d]", i), "member is not answered by a member; group by member at the coordinator that asks")
		}
	}
	if problem := grpcsrv.RollupIDProblem(req.GetRollupId()); problem != "" {
		verr.add("rollup_id", "%s %s", echo.Quote(req.GetRollupId()), problem)
	}
	if err := verr.errOrNil(); err != nil {
		return nil, err
	}
	return spec, nil
}

// Aggregate answers an AggregateRequest as member Config.MemberCode: it runs
// a rollup over this coordinator's members (stored, requested_by caller,
// caller_rollup_id the request's rollup_id) and
// answers with its totals as cells, which carry no member, and the rollup's
// id as rollup_id. The answer's
// min_cell_count is the largest k among the members; the cells carry the
// summed bounds and pending flags of the members' cells, and release_version
// is 0, as the coordinator has no release of its own; data_version is the
// sum of the members' data versions, so it changes whenever any member's
// data does. A request the
// policy DescribeNode advertises does not allow is refused with a
// *grpcsrv.PolicyError before any member is asked, and so is one outside a
// rollup of the caller that can be running (grpcsrv.CheckRunningRollup); a rollup that is not
// COMPLETE is refused with an *IncompleteError.
//
// The rollup's member timeout is cut so that the answer can arrive before the
// caller's deadline; the asking coordinator's member timeout should still be
// longer than this one's.
func (c *Coordinator) Aggregate(ctx context.Context, req *fedreportv1.AggregateRequest, caller string) (*fedreportv1.AggregateResponse, error) {
	if c.memberCode == "" {
		return nil, errors.New("aggregate: no member code configured")
	}
	spec, err := aggregateSpec(req)
	if err != nil {
		return nil, err
	}
	// Deny by default, before any member is asked: a request outside the
	// policy DescribeNode advertises would have the members that allow it
	// disclose, into their logs and this coordinator's rollups, cells that
	// the others' refusal then keeps from the caller.
	// The members' last known policies serve, so an answer costs no extra
	// round trip; only members whose policy is not known yet are asked. A
	// refusal may rest on a policy since relaxed: the members are asked
	// again before it stands.
	if err := c.allows(spec, c.describe(ctx, (*memberConn).worthDescribing).GetPolicy()); err != nil {
		if err := c.allows(spec, c.describe(ctx, nil).GetPolicy()); err != nil {
			return nil, err
		}
	}
	// As a node does: the asking coordinator is answered only within one
	// of its rollups that can be running.
	if err := grpcsrv.CheckRunningRollup(req.GetRollupId(), req.GetRollupStartedAt(), time.Now()); err != nil {
		c.log.WarnContext(ctx, "refused a coordinator outside a running rollup", "caller", caller, "err", err)
		return nil, err
	}
	timeout := c.memberTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		timeout = max(min(timeout, left-left*aggregateReserve/100), time.Millisecond)
	}
	r, err := c.runRollup(ctx, spec, caller, req.GetRollupId(), timeout)
	var refused *RefusedError
	if errors.As(err, &refused) {
		// In the words of the request this answers: from, not spec.from.
		fields := make([]string, len(refused.Fields))
		for i, f := range refused.Fields {
			fields[i] = strings.TrimPrefix(f, "spec.")
		}
		return nil, &RefusedError{Reason: refused.Reason, Members: refused.Members, Fields: fields, Msg: refused.Msg}
	}
	if err != nil {
		return nil, err
	}
	c.log.Info("answered as a member", "member", c.memberCode, "rollup", r.GetId(),
		"state", rollupStateName(r.GetState()), "caller", caller, "caller_rollup", r.GetCallerRollupId())
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		return nil, &IncompleteError{Member: c.memberCode, Rollup: r}
	}
	// The asking coordinator records the rollup's id beside this answer,
	// so that its result leads to this rollup and its members' answers.
	resp := &fedreportv1.AggregateResponse{Member: c.memberCode, RollupId: r.GetId()}
	for _, m := range r.GetMembers() {
		resp.MinCellCount = max(resp.MinCellCount, m.GetMinCellCount())
		resp.DataVersion = addSat(resp.DataVersion, m.GetDataVersion())
	}
	grouped := len(spec.GetGroupBy()) > 0
	cellBytes := 0
	for _, cell := range r.GetTotals() {
		if grouped && cell.GetUpperBound() == 0 && !cell.GetPending() {
			continue // the contract leaves zero cells out of grouped answers
		}
		resp.Cells = append(resp.Cells, cell)
		cellBytes += protowire.SizeTag(4) + protowire.SizeBytes(proto.Size(cell))
	}
	// As a node would: the totals of members that each fit one answer
	// may not, when they hold different cells.
	if cellBytes > c.maxAnswerBytes {
		return nil, &grpcsrv.AnswerTooLargeError{Cells: len(resp.Cells), Bytes: cellBytes, Limit: c.maxAnswerBytes}
	}
	return resp, nil
}

// addSat adds without wrapping: a data version must never go backwards.
func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

// allows returns a *grpcsrv.PolicyError when policy p, as DescribeNode
// advertises it, does not allow spec, in a node's words (node/aggregate.go): a
// dimension p does not list (none, when no member's policy is known), or a
// from before p's earliest date.
func (c *Coordinator) allows(spec *fedreportv1.RollupSpec, p *fedreportv1.Policy) error {
	dims := p.GetAllowedDimensions()
	for _, d := range spec.GetGroupBy() {
		if !slices.Contains(dims, d) {
			allowed := "none"
			if len(dims) > 0 {
				allowed = records.DimensionNames(dims)
			}
			return &grpcsrv.PolicyError{
				Reason: grpcsrv.ReasonDimensionNotAllowed,
				Field:  "group_by",
				Msg: fmt.Sprintf("member %s's disclosure policy, what all of its members allow, does not allow grouping by %s (allowed: %s); remove %s from group_by",
					c.memberCode, dimensionName(d), allowed, dimensionName(d)),
			}
		}
	}
	// YYYY-MM-DD sorts as dates; from is one (aggregateSpec). The date is
	// the members' words, cleaned when they said them (noteDescribe).
	if e := p.GetEarliestDate(); e != "" && spec.GetFrom() < e {
		return &grpcsrv.PolicyError{
			Reason: grpcsrv.ReasonPeriodNotAllowed,
			Field:  "from",
			Msg: fmt.Sprintf("member %s's disclosure policy, what all of its members allow, answers only from %s on; start the request (from %s) on or after %s",
				c.memberCode, e, spec.GetFrom(), e),
		}
	}
	return nil
}

// DescribeNode describes this coordinator as member Config.MemberCode, after
// asking its members to describe themselves. The policy is what holds for
// every member that answered: the largest k, the dimensions all of them
// allow, the latest earliest date. data_version is the sum of the members'
// last known data versions.
func (c *Coordinator) DescribeNode(ctx context.Context) (*fedreportv1.DescribeNodeResponse, error) {
	if c.memberCode == "" {
		return nil, errors.New("describe node: no member code configured")
	}
	return c.describe(ctx, nil), nil
}

// describe is DescribeNode once the member code is known to be set, after
// asking the members for which ask returns true (every member when ask is
// nil); the others count with what they last said. Aggregate checks
// requests against the policy it advertises.
func (c *Coordinator) describe(ctx context.Context, ask func(*memberConn) bool) *fedreportv1.DescribeNodeResponse {
	reg, release := c.acquireRegistry()
	defer release()
	c.probeAll(ctx, reg, ask, probeTimeout)

	resp := &fedreportv1.DescribeNodeResponse{Member: c.memberCode, Kind: KindCoordinator, SoftwareVersion: c.version}
	var policy *fedreportv1.Policy
	for _, m := range reg.members {
		pm := m.proto()
		resp.DataVersion = addSat(resp.DataVersion, pm.GetLastDataVersion())
		p := pm.GetPolicy()
		if p == nil {
			continue
		}
		if policy == nil {
			policy = &fedreportv1.Policy{
				MinCellCount:      p.GetMinCellCount(),
				AllowedDimensions: slices.Clone(p.GetAllowedDimensions()),
				EarliestDate:      p.GetEarliestDate(),
			}
			continue
		}
		policy.MinCellCount = max(policy.MinCellCount, p.GetMinCellCount())
		policy.AllowedDimensions = slices.DeleteFunc(policy.AllowedDimensions, func(d fedreportv1.Dimension) bool {
			return !slices.Contains(p.GetAllowedDimensions(), d)
		})
		policy.EarliestDate = max(policy.EarliestDate, p.GetEarliestDate()) // YYYY-MM-DD sorts as dates
	}
	if policy != nil {
		slices.Sort(policy.AllowedDimensions)
	}
	resp.Policy = policy
	return resp
}

// memberRules is the access matrix of the member listener: only another
// coordinator of the trust domain may ask.
func (c *Coordinator) memberRules() authz.Rules {
	parent := authz.InDomain(c.trustDomain, authz.Roles(identity.RoleCoordinator))
	return authz.Rules{
		fedreportv1.AggregationService_Aggregate_FullMethodName:    parent,
		fedreportv1.AggregationService_DescribeNode_FullMethodName: parent,
	}
}

// ServeMember serves AggregationService as member Config.MemberCode, with
// health and reflection, on lis over Config.MemberServerTLS (which must
// present the node certificate node/<MemberCode> the asking coordinator
// expects) until ctx is done; it stops as Serve does.
func (c *Coordinator) ServeMember(ctx context.Context, lis net.Listener) error {
	switch {
	case c.memberCode == "":
		return errors.New("serve member: no member code configured")
	case c.memberServerTLS == nil:
		return errors.New("serve member: no member server TLS configuration (a node certificate for the member code)")
	case c.trustDomain == "":
		return errors.New("serve member: no trust domain")
	}
	srv := grpc.NewServer(c.serverOptions(c.memberServerTLS, c.memberRules())...)
	fedreportv1.RegisterAggregationServiceServer(srv, &memberServer{c: c})
	return c.serveGRPC(ctx, lis, srv, fedreportv1.AggregationService_ServiceDesc.ServiceName, "coordinator serving as member "+c.memberCode)
}

// memberServer adapts the coordinator to the generated AggregationService.
type memberServer struct {
	fedreportv1.UnimplementedAggregationServiceServer
	c *Coordinator
}

// Aggregate implements AggregationService.
func (s *memberServer) Aggregate(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "Aggregate needs a verified client certificate")
	}
	resp, err := s.c.Aggregate(ctx, req, id.String())
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.AggregationService_Aggregate_FullMethodName, err)
	}
	return resp, nil
}

// DescribeNode implements AggregationService.
func (s *memberServer) DescribeNode(ctx context.Context, _ *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	resp, err := s.c.DescribeNode(ctx)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.AggregationService_DescribeNode_FullMethodName, err)
	}
	return resp, nil
}
