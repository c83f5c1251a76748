package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// fanOutLimit bounds how many members are asked at once. The calls wait on
// the network, not the CPU, so the bound is set above any federation's size
// (a member queued behind others would otherwise lose part of its deadline).
const fanOutLimit = 512

// reasonStopped is the failure_reason of a rollup cut short because the
// coordinator was stopping (Close, or Serve's shutdown deadline passing).
const reasonStopped = "coordinator stopping"

// reconnectWait bounds how long a rollup waits for a member that was down at
// the last attempt to reconnect before asking it.
const reconnectWait = time.Second

// maxReasonLen bounds a member's reason as stored, in bytes.
const maxReasonLen = 300

// dateLayout is the API's date format.
const dateLayout = "2006-01-02"

// Cell values of the enumerated dimensions, in enum order (unknown first),
// as the nodes write them. The position of a value orders totals.
var (
	offenceNames   = names(records.Offences(), records.OffenceName)
	channelNames   = names(records.Channels(), records.ChannelName)
	victimAgeNames = names(records.VictimAges(), records.VictimAgeName)
)

func names[E any](values []E, name func(E) string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = name(v)
	}
	return out
}

// ValidateSpec checks a rollup spec; the returned *ValidationError names
// every offending field (spec.from, spec.metrics[1], ...).
func ValidateSpec(spec *fedreportv1.RollupSpec) error {
	verr := &ValidationError{}
	if spec == nil {
		verr.add("spec", "required: give at least from and to")
		return verr
	}
	from, errFrom := records.ParseDate(spec.GetFrom())
	if errFrom != nil {
		verr.add("spec.from", "%q %s", spec.GetFrom(), errFrom.(*records.FieldError).Problem)
	}
	to, errTo := records.ParseDate(spec.GetTo())
	if errTo != nil {
		verr.add("spec.to", "%q %s", spec.GetTo(), errTo.(*records.FieldError).Problem)
	}
	if errFrom == nil && errTo == nil && to < from {
		verr.add("spec.to", "%s is before from %s; the range is inclusive and must not be empty", spec.GetTo(), spec.GetFrom())
	}
	seenM := map[fedreportv1.Metric]bool{}
	for i, m := range spec.GetMetrics() {
		field := fmt.Sprintf("spec.metrics[%d]", i)
		switch {
		case !records.ValidMetric(m):
			verr.add(field, "%v is not a metric; want one of %s", m, metricList())
		case seenM[m]:
			verr.add(field, "%s is listed twice", metricName(m))
		}
		seenM[m] = true
	}
	seenD := map[fedreportv1.Dimension]bool{}
	for i, d := range spec.GetGroupBy() {
		field := fmt.Sprintf("spec.group_by[%d]", i)
		switch {
		case !records.ValidDimension(d):
			verr.add(field, "%v is not a dimension; want member, month, offence, channel or victim_age", d)
		case seenD[d]:
			verr.add(field, "%s is listed twice", dimensionName(d))
		}
		seenD[d] = true
	}
	return verr.errOrNil()
}

func metricName(m fedreportv1.Metric) string       { return records.MetricName(m) }
func dimensionName(d fedreportv1.Dimension) string { return records.DimensionName(d) }

func metricList() string { return strings.Join(names(records.Metrics(), records.MetricName), ", ") }

// memberRequest is what every member is asked for a spec: the metrics made
// explicit, so a newer node cannot add ones this coordinator does not know,
// and the grouping without DIMENSION_MEMBER, which only the coordinator answers.
// rollupID and started name the rollup it is for: a member answers a
// coordinator only within a rollup that can be running
// (grpcsrv.CheckRunningRollup).
func memberRequest(spec *fedreportv1.RollupSpec, rollupID string, started *timestamppb.Timestamp) *fedreportv1.AggregateRequest {
	req := &fedreportv1.AggregateRequest{
		Metrics:         slices.Clone(spec.GetMetrics()),
		From:            spec.GetFrom(),
		To:              spec.GetTo(),
		RollupId:        rollupID,
		RollupStartedAt: started,
	}
	if len(req.Metrics) == 0 {
		req.Metrics = records.Metrics()
	}
	for _, d := range spec.GetGroupBy() {
		if d != fedreportv1.Dimension_DIMENSION_MEMBER {
			req.GroupBy = append(req.GroupBy, d)
		}
	}
	return req
}

// outcome is one member's part in a rollup, before totals.
type outcome struct {
	result *fedreportv1.MemberResult
	answer *fedreportv1.AggregateResponse // nil unless the member answered
	ids    []cellID                       // answer's cells' ids, as answerCheck made them
}

// StartRollup validates spec, stores it as RUNNING, asks every member in
// parallel (each under the member timeout), computes totals over the members
// that answered correctly, stores the finished rollup and returns it.
// requester is the verified identity that asked, as stored in requested_by.
//
// The fan-out does not stop when ctx is cancelled: members log every answer
// against the rollup id, so the coordinator finishes and stores the rollup
// even if its requester went away. Close, or Shutdown past its deadline,
// stops it (the rollup is then INTERRUPTED, "coordinator stopping").
func (c *Coordinator) StartRollup(ctx context.Context, spec *fedreportv1.RollupSpec, requester string) (*fedreportv1.Rollup, error) {
	return c.runRollup(ctx, spec, requester, "", c.memberTimeout)
}

// runRollup is StartRollup with the per-member timeout given and, for a
// rollup that answers another coordinator's Aggregate, that coordinator's
// rollup id (checked by aggregateSpec), stored as caller_rollup_id.
// Aggregate shortens the timeout to fit its caller's deadline.
func (c *Coordinator) runRollup(ctx context.Context, spec *fedreportv1.RollupSpec, requester, callerRollupID string, timeout time.Duration) (*fedreportv1.Rollup, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	if !c.begin() {
		return nil, ErrClosed
	}
	defer c.inflight.Done()
	// The rollup asks, and counts, the members of the moment it starts.
	reg, release := c.acquireRegistry()
	defer release()
	if err := c.precheck(ctx, reg, spec, timeout); err != nil {
		return nil, err
	}

	start := time.Now()
	r := &fedreportv1.Rollup{
		State:          fedreportv1.RollupState_ROLLUP_STATE_RUNNING,
		Spec:           proto.Clone(spec).(*fedreportv1.RollupSpec),
		RequestedBy:    requester,
		CallerRollupId: callerRollupID,
		StartedAt:      timestamppb.New(start),
	}
	if err := c.store.create(r); err != nil {
		return nil, err
	}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(c.lifetime, cancel)
	defer stop()

	outcomes := c.fanOut(rctx, reg, memberRequest(r.GetSpec(), r.GetId(), r.GetStartedAt()), timeout)
	c.finishRollup(r, reg, outcomes, rctx.Err() != nil)
	r.FinishedAt = timestamppb.Now()

	if err := c.store.finish(r); err != nil {
		return nil, err
	}
	c.metrics.observeRollup(r)
	statuses := make([]string, len(r.GetMembers()))
	for i, m := range r.GetMembers() {
		statuses[i] = m.GetMember() + "=" + memberStatusName(m.GetStatus())
	}
	// Never log counts or cells: only who took part and how.
	c.log.Info("rollup finished",
		"id", r.GetId(),
		"state", rollupStateName(r.GetState()),
		"members", strings.Join(statuses, " "),
		"duration", time.Since(start).Round(time.Millisecond),
		"requested_by", requester)
	return r, nil
}

// begin registers an in-flight rollup unless the coordinator is closing.
func (c *Coordinator) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.inflight.Add(1)
	return true
}

// fanOut asks every member in parallel, at most fanOutLimit at once, and
// returns their outcomes in registry order.
//
// Every member shares one deadline, set when the fan-out starts, so that a
// hung member holds the rollup for the member timeout and no longer, wherever
// it stands in the registry. One context carries it for all of them: one
// timer per rollup, not one per member.
func (c *Coordinator) fanOut(ctx context.Context, reg *registry, req *fedreportv1.AggregateRequest, timeout time.Duration) []outcome {
	outcomes := make([]outcome, len(reg.members))
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	check := newAnswerCheck(req)
	slots := make(chan struct{}, fanOutLimit)
	var wg sync.WaitGroup
	for i, m := range reg.members {
		slots <- struct{}{}
		wg.Add(1)
		reg.callers.run(func() {
			defer wg.Done()
			outcomes[i] = c.askMember(ctx, mctx, m, req, check, timeout)
			<-slots
		})
	}
	wg.Wait()
	return outcomes
}

// callers runs member calls on goroutines kept from one rollup to the next,
// as grpc-go's server stream workers (grpc.NumStreamWorkers) do for
// handlers. A goroutine started per member and rollup would grow its stack
// through the gRPC call path every time; a kept caller starts the next call
// with the stack it grew, until the garbage collector shrinks it.
type callers struct {
	work chan func()   // unbuffered: a send succeeds only when a caller is idle
	quit chan struct{} // closed by close: idle callers return
	max  int           // callers kept at most; past it, a call gets a goroutine of its own

	mu     sync.Mutex // protects n and closed
	n      int        // callers running or idle
	closed bool
	wg     sync.WaitGroup // the callers
}

func newCallers(max int) *callers {
	return &callers{work: make(chan func()), quit: make(chan struct{}), max: max}
}

// run calls f on an idle caller, on a new caller, or, past max callers or
// after close, on a goroutine of its own. It does not wait for f.
func (p *callers) run(f func()) {
	select {
	case p.work <- f:
		return
	default:
	}
	p.mu.Lock()
	if p.closed || p.n >= p.max {
		p.mu.Unlock()
		go f()
		return
	}
	p.n++
	p.wg.Add(1)
	p.mu.Unlock()
	go p.loop(f)
}

// loop is one caller: it runs f, then whatever run hands it, until close.
func (p *callers) loop(f func()) {
	defer p.wg.Done()
	for {
		f()
		select {
		case f = <-p.work:
		case <-p.quit:
			return
		}
	}
}

// close stops the idle callers and waits for every caller to return; a call
// still running is waited for.
func (p *callers) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.quit)
	p.wg.Wait()
}

// awaitReconnect gives a member whose connection is in TRANSIENT_FAILURE a
// moment to reconnect before it is asked. The channel stays in
// TRANSIENT_FAILURE until a connection is READY (gRFC A62), so a call made at
// once would fail even if the member is back; resetting the backoff makes the
// channel try now rather than after the rest of its backoff. The wait is
// bounded by ctx (the member's deadline) and by a quarter of the timeout, so
// a member still down costs the rollup only this moment. It reports whether
// it waited.
func awaitReconnect(ctx context.Context, m *memberConn, timeout time.Duration) bool {
	if m.conn.GetState() != connectivity.TransientFailure {
		return false
	}
	m.conn.ResetConnectBackoff()
	wctx, cancel := context.WithTimeout(ctx, min(timeout/4, reconnectWait))
	defer cancel()
	m.conn.WaitForStateChange(wctx, connectivity.TransientFailure)
	return true
}

// retryable reports whether a failed Aggregate call is worth one quick retry:
// UNAVAILABLE means the call did not get an answer through (a connection
// that broke, a node restarting), which a second attempt often gets past. A
// failed TLS handshake is UNAVAILABLE too, but a wrong certificate does not
// heal in milliseconds, so it is not retried.
func retryable(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.Unavailable && !strings.Contains(st.Message(), "handshake")
}

// askMember calls one member's Aggregate under mctx, the rollup's context
// ctx with the member deadline (timeout after the fan-out started), and
// classifies the result. A call that fails with UNAVAILABLE is retried once,
// within the same deadline: the retry never extends the member's time. The
// member's own status is never passed on as a status: it becomes a
// MemberStatus and a reason.
func (c *Coordinator) askMember(ctx, mctx context.Context, m *memberConn, req *fedreportv1.AggregateRequest, check *answerCheck, timeout time.Duration) outcome {
	res := &fedreportv1.MemberResult{Member: m.Code}
	// The latency is all the rollup waited for this member, the wait for a
	// member that was down to reconnect included: else a member down since
	// the last rollup shows the microseconds of a refused connection in a
	// rollup it held up for a second.
	start := time.Now()
	waited := awaitReconnect(mctx, m, timeout)

	// The software version comes from DescribeNode, asked once per member
	// (ListMembers refreshes it), concurrently with the aggregate.
	var described chan *fedreportv1.DescribeNodeResponse
	if m.softwareVersion() == "" {
		described = make(chan *fedreportv1.DescribeNodeResponse, 1)
		go func() {
			d, err := m.client.DescribeNode(mctx, &fedreportv1.DescribeNodeRequest{})
			if err != nil || d.GetMember() != m.Code {
				d = nil
			}
			described <- d
		}()
	}

	resp, err := aggregate(mctx, m, req)
	retried := false
	if err != nil && retryable(err) && mctx.Err() == nil {
		retried = true
		if !waited {
			// At most one reconnect wait per member and rollup, so a
			// member that stays down costs the rollup one moment, not two.
			awaitReconnect(mctx, m, timeout)
		}
		resp, err = aggregate(mctx, m, req)
	}
	res.Latency = durationpb.New(time.Since(start))

	if described != nil {
		if d := <-described; d != nil {
			m.noteDescribe(time.Now(), d)
		}
	}
	res.SoftwareVersion = m.softwareVersion()

	if err != nil {
		res.Status, res.Reason = classifyError(ctx, err, timeout)
		if retried && res.Status == fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE {
			res.Reason = clean("after one retry: " + res.Reason)
		}
		var paced *paceError
		if ctx.Err() == nil && !errors.As(err, &paced) {
			// A call cut short by Close, or never made for its turn
			// coming too late, says nothing about the member.
			m.noteFailure(res.Reason)
		}
		return outcome{result: res}
	}
	m.noteAnswer(time.Now(), resp.GetDataVersion())
	res.DataVersion = resp.GetDataVersion()
	res.MinCellCount = resp.GetMinCellCount()
	res.ReleaseVersion = resp.GetReleaseVersion()
	// A regional coordinator's rollup that computed the answer: kept
	// whatever check.answer finds, which it has no part in, so that an
	// invalid answer can be traced too.
	res.MemberRollupId = clean(resp.GetRollupId())
	ids, err := check.answer(m.Code, resp)
	if err != nil {
		res.Status = fedreportv1.MemberStatus_MEMBER_STATUS_INVALID
		res.Reason = clean("invalid answer, not summed: " + err.Error())
		return outcome{result: res}
	}
	res.Status = fedreportv1.MemberStatus_MEMBER_STATUS_OK
	return outcome{result: res, answer: resp, ids: ids}
}

// classifyError turns a failed Aggregate call into a member status and a
// reason in the coordinator's words (quoting the member's message, cleaned).
func classifyError(rollupCtx context.Context, err error, timeout time.Duration) (fedreportv1.MemberStatus, string) {
	var paced *paceError
	if errors.As(err, &paced) {
		return fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, clean(paced.Error())
	}
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, fmt.Sprintf("no answer within the member timeout of %v", timeout)
	case codes.Canceled:
		if rollupCtx.Err() != nil {
			return fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, "the rollup stopped before the member answered"
		}
		return fedreportv1.MemberStatus_MEMBER_STATUS_REFUSED, clean("member cancelled the call: " + msg)
	case codes.Unavailable:
		if strings.Contains(msg, "handshake") {
			return fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, clean("TLS handshake failed (is the certificate at this address the member's node certificate?): " + msg)
		}
		// The status says unreachable: the reason is gRPC's, which says
		// how (connection refused, no route, closed).
		return fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, clean(msg)
	default:
		// The status says refused: the reason starts with the member's code,
		// so that status and reason, side by side, do not say it twice.
		return fedreportv1.MemberStatus_MEMBER_STATUS_REFUSED, clean(codeName(st.Code()) + ": " + msg)
	}
}

// codeName is a gRPC code in the upper-case form grpcurl and the spec use.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// clean makes text from a member safe to store and show: valid UTF-8, no
// control characters, bounded length.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReasonLen {
		cut := maxReasonLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// cellID is a checked cell's metric and dimension values as small
// integers: what the coordinator hashes to sum 200 members' cells and
// compares to list them, instead of five strings. A dimension not grouped
// by is 0, as its value is empty.
type cellID struct {
	metric fedreportv1.Metric
	// month is the YYYY-MM value as records.MonthOf numbers it.
	month uint32
	// member is the member's place in the registry plus one.
	member uint32
	// offence, channel and ageBand are the value's place in offenceNames,
	// channelNames and victimAgeNames: enum order, unknown first.
	offence, channel, ageBand uint8
}

// compareIDs returns the order in which a rollup lists its cells: by
// metric, then by the grouped dimensions in group_by order, members in
// registry order, months by date, the enumerated dimensions in enum order.
func compareIDs(groupBy []fedreportv1.Dimension) func(a, b cellID) int {
	return records.CellOrder(groupBy, func(c cellID, d fedreportv1.Dimension) uint32 {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MEMBER:
			return c.member
		case fedreportv1.Dimension_DIMENSION_MONTH:
			return c.month
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			return uint32(c.offence)
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			return uint32(c.channel)
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			return uint32(c.ageBand)
		}
		return uint32(c.metric)
	})
}

// sortByID orders cells, and ids with them, as compare says. Nodes list
// their cells in this order already, which costs one pass to see.
func sortByID(cells []*fedreportv1.Cell, ids []cellID, compare func(a, b cellID) int) {
	if slices.IsSortedFunc(ids, compare) {
		return
	}
	type pair struct {
		id   cellID
		cell *fedreportv1.Cell
	}
	pairs := make([]pair, len(cells))
	for i := range cells {
		pairs[i] = pair{ids[i], cells[i]}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return compare(a.id, b.id) })
	for i, p := range pairs {
		ids[i], cells[i] = p.id, p.cell
	}
}

// cellDimensions are the dimensions a member's cell may carry.
var cellDimensions = [...]fedreportv1.Dimension{
	fedreportv1.Dimension_DIMENSION_MONTH,
	fedreportv1.Dimension_DIMENSION_OFFENCE,
	fedreportv1.Dimension_DIMENSION_CHANNEL,
	fedreportv1.Dimension_DIMENSION_VICTIM_AGE,
}

// maxEnum bounds the metric and dimension values answerCheck indexes by;
// a larger one in an answer is simply not requested.
const maxEnum = 16

// answerCheck checks members' answers to one request. It is worked out once
// per rollup and read by every member's call at once, so it is never
// written after newAnswerCheck.
type answerCheck struct {
	req                   *fedreportv1.AggregateRequest
	metrics               [maxEnum]bool // by metric
	grouped               [maxEnum]bool // by dimension
	firstMonth, lastMonth uint32        // of the request's from and to, as cellID.month
}

func newAnswerCheck(req *fedreportv1.AggregateRequest) *answerCheck {
	a := &answerCheck{req: req}
	for _, m := range req.GetMetrics() {
		if m >= 0 && m < maxEnum {
			a.metrics[m] = true
		}
	}
	for _, d := range req.GetGroupBy() {
		if d >= 0 && d < maxEnum {
			a.grouped[d] = true
		}
	}
	from, _ := records.ParseDate(req.GetFrom()) // ValidateSpec has checked both
	to, _ := records.ParseDate(req.GetTo())
	a.firstMonth, a.lastMonth = records.MonthOf(from), records.MonthOf(to)
	return a
}

// index returns v's place in names, or false if v is not one of them.
func index(names []string, v string) (uint8, bool) {
	i := slices.Index(names, v)
	return uint8(i), i >= 0
}

// set records in id the value v of grouped dimension d, and reports whether
// v is a value of d in the requested range.
func (a *answerCheck) set(id *cellID, d fedreportv1.Dimension, v string) (ok bool) {
	switch d {
	case fedreportv1.Dimension_DIMENSION_MONTH:
		month, err := records.ParseMonth(v)
		id.month = month
		return err == nil && month >= a.firstMonth && month <= a.lastMonth
	case fedreportv1.Dimension_DIMENSION_OFFENCE:
		id.offence, ok = index(offenceNames, v)
	case fedreportv1.Dimension_DIMENSION_CHANNEL:
		id.channel, ok = index(channelNames, v)
	case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
		id.ageBand, ok = index(victimAgeNames, v)
	}
	return ok
}

// answer reports how member code's answer breaks the AggregationService
// contract for the request, if it does: an answer that fails here is not
// summed. It returns the ids of the answer's cells, in their order.
func (a *answerCheck) answer(code string, resp *fedreportv1.AggregateResponse) ([]cellID, error) {
	if resp.GetMember() != code {
		return nil, fmt.Errorf("answered as member %q, registered as %q", resp.GetMember(), code)
	}
	cells := resp.GetCells()
	ids := make([]cellID, len(cells))
	seen := make(map[cellID]struct{}, len(cells))
	for i, cell := range cells {
		id := cellID{metric: cell.GetMetric()}
		if id.metric < 0 || id.metric >= maxEnum || !a.metrics[id.metric] {
			return nil, fmt.Errorf("cell %d has metric %v, which was not requested", i, id.metric)
		}
		if m := cell.GetMember(); m != "" {
			return nil, fmt.Errorf("cell %d sets member %q, which was not grouped by", i, clean(m))
		}
		for _, d := range cellDimensions {
			v := records.CellValue(cell, d)
			switch {
			case !a.grouped[d] && v != "":
				return nil, fmt.Errorf("cell %d sets %s %q, which was not grouped by", i, dimensionName(d), clean(v))
			case a.grouped[d] && !a.set(&id, d, v):
				return nil, fmt.Errorf("cell %d has %s %q, not a valid value in the requested range", i, dimensionName(d), clean(v))
			}
		}
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("cell %d repeats an earlier cell's metric and dimensions", i)
		}
		seen[id] = struct{}{}
		if err := checkBounds(cell); err != nil {
			return nil, fmt.Errorf("cell %d: %w", i, err)
		}
		ids[i] = id
	}
	if len(a.req.GetGroupBy()) == 0 {
		for _, m := range a.req.GetMetrics() {
			if _, ok := seen[cellID{metric: m}]; !ok {
				return nil, fmt.Errorf("no cell for requested metric %s", metricName(m))
			}
		}
	}
	return ids, nil
}

// checkBounds checks that a cell's bounds can hold its value (types.proto,
// Cell). A member's protected release sets the bounds of a withheld cell
// itself (they may be 0..N, not 1..k-1), so the coordinator checks only that
// they are consistent, never that they follow from k:
//   - an exact cell (no suppressed cell, not pending) has count = lower = upper;
//   - a withheld cell has count <= lower <= upper: count is the exactly known
//     part, and the bounds hold the value;
//   - a pending cell's count is an earlier release's value, which a
//     retraction may have left outside today's bounds: only lower <= upper.
func checkBounds(cell *fedreportv1.Cell) error {
	n, s := cell.GetCount(), cell.GetSuppressedCells()
	lo, hi := cell.GetLowerBound(), cell.GetUpperBound()
	switch {
	case lo > hi:
		return fmt.Errorf("lower bound %d is above the upper bound %d", lo, hi)
	case cell.GetPending():
		return nil
	case s == 0 && (lo != n || hi != n):
		return fmt.Errorf("exact cell has bounds [%d, %d], want both equal to its count %d", lo, hi, n)
	case s > 0 && n > lo:
		return fmt.Errorf("withheld cell's known count %d is above its lower bound %d", n, lo)
	}
	return nil
}

// total accumulates one cell of the totals.
type total struct {
	count, lower, upper uint64
	suppressed          uint32
	pending             bool // some member cell behind the total is pending
}

// add returns t plus c. Sums saturate rather than wrap: a bound at the
// largest value still holds the total, where a wrapped one would lie, and
// answers that pass checkBounds keep count <= lower <= upper when saturated.
func (t total) add(c *fedreportv1.Cell) total {
	return total{
		count:      addSat(t.count, c.GetCount()),
		lower:      addSat(t.lower, c.GetLowerBound()),
		upper:      addSat(t.upper, c.GetUpperBound()),
		suppressed: uint32(min(uint64(t.suppressed)+uint64(c.GetSuppressedCells()), math.MaxUint32)),
		pending:    t.pending || c.GetPending(),
	}
}

// finishRollup fills r's member results, totals and state from the outcomes.
// stopped says the coordinator cut the fan-out short (Close).
func (c *Coordinator) finishRollup(r *fedreportv1.Rollup, reg *registry, outcomes []outcome, stopped bool) {
	spec := r.GetSpec()
	byMember := slices.Contains(spec.GetGroupBy(), fedreportv1.Dimension_DIMENSION_MEMBER)
	compare := compareIDs(spec.GetGroupBy())

	// sums holds the totals in the order their ids were first met; at
	// finds a total by id. Each total keeps the first cell of its id, whose
	// dimension values it lists.
	type sum struct {
		id    cellID
		first *fedreportv1.Cell
		total total
	}
	var sums []sum
	at := map[cellID]int{}
	for i, o := range outcomes {
		res := o.result
		if res.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			continue
		}
		cells := o.answer.GetCells()
		if byMember {
			for j := range o.ids {
				o.ids[j].member = uint32(i + 1) // outcomes are in registry order
			}
		}
		for j, cell := range cells {
			n, ok := at[o.ids[j]]
			if !ok {
				n = len(sums)
				at[o.ids[j]] = n
				sums = append(sums, sum{id: o.ids[j], first: cell})
			}
			sums[n].total = sums[n].total.add(cell)
		}
		// The answer was decoded for this rollup alone: its cells become
		// the member's result as they are, without a copy.
		sortByID(cells, o.ids, compare)
		res.Cells = cells
	}

	var okCount int
	for _, o := range outcomes {
		r.Members = append(r.Members, o.result)
		if o.result.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			okCount++
		} else {
			r.MissingMembers = append(r.MissingMembers, o.result.GetMember())
		}
	}

	// A quorum of 0 still needs one member: totals over nobody are not a result.
	switch {
	case stopped:
		r.State = fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED
		r.FailureReason = reasonStopped
	case okCount < c.quorum(reg):
		r.State = fedreportv1.RollupState_ROLLUP_STATE_FAILED
		r.FailureReason = c.quorumReason(r, okCount)
	case okCount == 0:
		r.State = fedreportv1.RollupState_ROLLUP_STATE_FAILED
		r.FailureReason = "no member answered correctly; " + missingReasons(r)
	case okCount < len(outcomes):
		r.State = fedreportv1.RollupState_ROLLUP_STATE_PARTIAL
	default:
		r.State = fedreportv1.RollupState_ROLLUP_STATE_COMPLETE
	}
	if r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_FAILED || r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED {
		// No result: neither totals nor the members' cells, from which a
		// reader could add up the partial sum the state withholds. What each
		// member disclosed stays in its own disclosure log, under this id.
		for _, m := range r.GetMembers() {
			m.Cells = nil
		}
		return
	}

	if len(spec.GetGroupBy()) == 0 {
		// Without grouping every requested metric has a total, even 0.
		for _, m := range memberRequest(spec, "", nil).GetMetrics() {
			id := cellID{metric: m}
			if _, ok := at[id]; !ok {
				at[id] = len(sums)
				sums = append(sums, sum{id: id, first: &fedreportv1.Cell{Metric: m}})
			}
		}
	}
	ids := make([]cellID, len(sums))
	r.Totals = make([]*fedreportv1.Cell, len(sums))
	for i, s := range sums {
		cell := &fedreportv1.Cell{
			Metric:          s.id.metric,
			Month:           s.first.GetMonth(),
			Offence:         s.first.GetOffence(),
			Channel:         s.first.GetChannel(),
			VictimAge:       s.first.GetVictimAge(),
			Count:           s.total.count,
			SuppressedCells: s.total.suppressed,
			LowerBound:      s.total.lower,
			UpperBound:      s.total.upper,
			Pending:         s.total.pending,
		}
		if s.id.member > 0 {
			cell.Member = reg.members[s.id.member-1].Code
		}
		ids[i], r.Totals[i] = s.id, cell
	}
	sortByID(r.Totals, ids, compare)
	c.bound(r)
}

// MaxRollupBytes is the largest rollup a coordinator stores with its cells:
// the members' answers may each be up to a gRPC message (4 MiB), and a
// rollup holds them all and their totals. The CLI accepts answers this large;
// grpcurl needs -max-msg-sz for a rollup over 4 MiB in the FULL view.
const MaxRollupBytes = 64 << 20

// bound turns a result larger than MaxRollupBytes into a FAILED rollup that
// says how to ask for a smaller one. What each member disclosed stays in its
// own disclosure log, under the rollup's id.
func (c *Coordinator) bound(r *fedreportv1.Rollup) {
	size := proto.Size(r)
	if size <= c.maxRollupBytes {
		return
	}
	cells := len(r.GetTotals())
	for _, m := range r.GetMembers() {
		cells += len(m.GetCells())
		m.Cells = nil
	}
	r.Totals = nil
	r.State = fedreportv1.RollupState_ROLLUP_STATE_FAILED
	r.FailureReason = fmt.Sprintf("the result would be %d cells in %d bytes, over the coordinator's limit of %d bytes for one rollup; ask for a shorter period (from, to) or group by fewer dimensions",
		cells, size, c.maxRollupBytes)
}

// quorum is how many members must answer correctly for a rollup to have
// totals: every member with RequireAll, else MinMembers.
func (c *Coordinator) quorum(reg *registry) int {
	if c.requireAll {
		return len(reg.members)
	}
	return c.minMembers
}

// quorumReason says why a rollup fell below the quorum and who is missing.
func (c *Coordinator) quorumReason(r *fedreportv1.Rollup, okCount int) string {
	rule := fmt.Sprintf("at least %d must (min_members)", c.minMembers)
	if c.requireAll {
		rule = "every member must (require_all)"
	}
	return fmt.Sprintf("only %d of %d members answered correctly; %s; %s", okCount, len(r.GetMembers()), rule, missingReasons(r))
}

// missingReasons lists the members that did not answer correctly with
// their status: "missing: IT (unreachable), ES (timeout)". Each member's
// full reason is in its MemberResult.
func missingReasons(r *fedreportv1.Rollup) string {
	var parts []string
	for _, m := range r.GetMembers() {
		if m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			parts = append(parts, m.GetMember()+" ("+memberStatusName(m.GetStatus())+")")
		}
	}
	return "missing: " + strings.Join(parts, ", ")
}

// memberStatusName is a member status in lower case (ok, timeout, ...).
func memberStatusName(s fedreportv1.MemberStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MEMBER_STATUS_"))
}

// rollupStateName is a rollup state in lower case (complete, partial, ...).
func rollupStateName(s fedreportv1.RollupState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLUP_STATE_"))
}
