package node

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// MaxRollupIDLen is the longest rollup_id a request may carry.
const MaxRollupIDLen = grpcsrv.MaxRollupIDLen

// query is a validated, normalised aggregate request.
type query struct {
	req      *fedreportv1.AggregateRequest // normalised: metrics filled in
	metrics  []fedreportv1.Metric
	from, to uint32 // day numbers, inclusive
	groupBy  []fedreportv1.Dimension
	mask     uint8 // the table group_by names, month aside
	byMonth  bool
	// parts are the release periods that tile the window: one part, or
	// one per month when grouped by month.
	parts [][]periods.Period
}

// prepare checks an aggregate request against the API's rules and the
// member's policy and returns it normalised: an empty metric list becomes
// every metric. Errors are *records.FieldError (a malformed request) or
// *PolicyError (a refusal).
func (s *Store) prepare(req *fedreportv1.AggregateRequest) (*query, error) {
	q := &query{}
	var err error
	if q.from, err = requestDate("from", req.GetFrom()); err != nil {
		return nil, err
	}
	if q.to, err = requestDate("to", req.GetTo()); err != nil {
		return nil, err
	}
	if q.from > q.to {
		return nil, &records.FieldError{Field: "to", Value: req.GetTo(), Problem: "is before from " + req.GetFrom() + " (want from <= to)"}
	}
	q.metrics = slices.Clone(req.GetMetrics())
	if len(q.metrics) == 0 {
		q.metrics = records.Metrics()
	}
	for i, m := range q.metrics {
		if !records.ValidMetric(m) {
			return nil, &records.FieldError{Field: "metrics", Value: records.MetricName(m), Problem: "is not a metric (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received; or none for all)"}
		}
		if slices.Contains(q.metrics[:i], m) {
			return nil, &records.FieldError{Field: "metrics", Value: records.MetricName(m), Problem: "is listed twice"}
		}
	}
	q.groupBy = slices.Clone(req.GetGroupBy())
	for i, d := range q.groupBy {
		switch {
		case !records.ValidDimension(d):
			return nil, &records.FieldError{Field: "group_by", Value: records.DimensionName(d), Problem: "is not a dimension (want month, offence, channel, victim_age)"}
		case d == fedreportv1.Dimension_DIMENSION_MEMBER:
			return nil, &records.FieldError{Field: "group_by", Value: "member", Problem: "is answered by a coordinator only; a node is one member (remove it)"}
		case slices.Contains(q.groupBy[:i], d):
			return nil, &records.FieldError{Field: "group_by", Value: records.DimensionName(d), Problem: "is listed twice"}
		}
	}
	if problem := grpcsrv.RollupIDProblem(req.GetRollupId()); problem != "" {
		return nil, &records.FieldError{Field: "rollup_id", Value: req.GetRollupId(), Problem: problem}
	}
	// The policy, after the request is known to be well formed: the
	// window must be tiled by release periods and the group_by must be a
	// published table, so that the answer is a sum of release cells.
	var mask uint8
	for _, d := range q.groupBy {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			q.byMonth = true
		default:
			mask |= tableMask([]fedreportv1.Dimension{d})
		}
	}
	if !s.policy.publishes(mask) {
		return nil, &PolicyError{
			Reason: ReasonTableNotPublished,
			Field:  "group_by",
			Msg: fmt.Sprintf("member %s does not publish a table by %s (published: %s, each by month or not); group by one of those",
				s.member, records.DimensionNames(slices.DeleteFunc(slices.Clone(q.groupBy), func(d fedreportv1.Dimension) bool { return d == fedreportv1.Dimension_DIMENSION_MONTH })), s.policy.tableNames()),
		}
	}
	q.mask = mask
	if e := s.policy.EarliestDate; e != "" {
		earliest, _ := records.ParseDate(e) // checked by Policy.normalize
		if q.from < earliest {
			return nil, &PolicyError{
				Reason: ReasonPeriodNotAllowed,
				Field:  "from",
				Msg: fmt.Sprintf("member %s's disclosure policy answers only from %s on; start the request (from %s) on or after %s",
					s.member, e, req.GetFrom(), e),
			}
		}
	}
	w := periods.Window{From: q.from, To: q.to}
	var ok bool
	if q.byMonth {
		q.parts, ok = s.cal.TileMonths(w)
	} else {
		var tiles []periods.Period
		tiles, ok = s.cal.Tile(w)
		q.parts = [][]periods.Period{tiles}
	}
	if !ok {
		msg := fmt.Sprintf("member %s answers only from its release: %s", s.member, s.cal.Refusal(w))
		if q.byMonth {
			if _, whole := s.cal.Tile(w); whole {
				msg = fmt.Sprintf("member %s answers by month only where each month of the window is a union of its release periods: %s (ask without grouping by month, or for whole months)", s.member, w)
			}
		}
		return nil, &PolicyError{Reason: ReasonPeriodNotAligned, Field: "to", Msg: msg}
	}
	q.req = &fedreportv1.AggregateRequest{
		Metrics:         q.metrics,
		From:            req.GetFrom(),
		To:              req.GetTo(),
		GroupBy:         q.groupBy,
		RollupId:        req.GetRollupId(),
		RollupStartedAt: req.GetRollupStartedAt(),
	}
	return q, nil
}

func requestDate(field, s string) (uint32, error) {
	if s == "" {
		return 0, &records.FieldError{Field: field, Value: s, Problem: "is required (want YYYY-MM-DD)"}
	}
	d, err := records.ParseDate(s)
	if err != nil {
		return 0, &records.FieldError{Field: field, Value: s, Problem: err.(*records.FieldError).Problem}
	}
	return d, nil
}

// answerKey is one output cell of an answer: the metric's position in the
// request, the part of the window (its month) and the table's values.
type answerKey struct {
	metric       int
	part         int
	off, ch, age uint8
}

// answerCell sums release cells with interval arithmetic.
type answerCell struct {
	count, lower, upper uint64
	suppressed          uint32
	pending             bool
}

func (a *answerCell) add(c relCell) {
	switch {
	case c.exact():
		a.count = satAdd(a.count, c.value)
	case c.pending:
		a.count = satAdd(a.count, c.value)
		a.suppressed++
		a.pending = true
	default:
		a.suppressed++
	}
	a.lower, a.upper = satAdd(a.lower, c.lower), satAdd(a.upper, c.upper)
}

// readAnswer sums the release cells of q from tx: for each metric, each part
// of the window and each period tiling it, one short range of the release
// bucket. Its cost grows with the periods and cells in range, never with
// the records.
func readAnswer(tx *bolt.Tx, q *query) ([]*fedreportv1.Cell, error) {
	rel := tx.Bucket(bucketRelease)
	sums := map[answerKey]*answerCell{}
	for mi, m := range q.metrics {
		for part, tiles := range q.parts {
			for _, t := range tiles {
				prefix := relKey{metric: uint8(m), from: t.From, to: t.To, mask: q.mask}.bytes()[:10]
				c := rel.Cursor()
				for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
					rk, ok1 := parseRelKey(k)
					rc, ok2 := parseRelCell(v)
					if !ok1 || !ok2 {
						return nil, &CorruptError{Problem: fmt.Sprintf("release key %x has a malformed key or value", k)}
					}
					ak := answerKey{mi, part, rk.off, rk.ch, rk.age}
					if sums[ak] == nil {
						sums[ak] = &answerCell{}
					}
					sums[ak].add(rc)
				}
			}
		}
	}
	keys := make([]answerKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	if len(q.groupBy) == 0 {
		keys = keys[:0]
		for mi := range q.metrics {
			keys = append(keys, answerKey{metric: mi})
		}
	}
	slices.SortFunc(keys, records.CellOrder(q.groupBy, func(k answerKey, d fedreportv1.Dimension) uint32 {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			return uint32(k.part)
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			return uint32(k.off)
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			return uint32(k.ch)
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			return uint32(k.age)
		}
		return uint32(k.metric)
	}))
	out := make([]*fedreportv1.Cell, 0, len(keys))
	for _, k := range keys {
		a := sums[k]
		if a == nil {
			a = &answerCell{}
		}
		if len(q.groupBy) > 0 && a.suppressed == 0 && a.count == 0 {
			continue // grouped answers leave exact zeros out
		}
		c := &fedreportv1.Cell{
			Metric: q.metrics[k.metric], Count: a.count, SuppressedCells: a.suppressed,
			LowerBound: a.lower, UpperBound: a.upper, Pending: a.pending,
		}
		for _, d := range q.groupBy {
			switch d {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				c.Month = records.MonthString(records.MonthOf(q.parts[k.part][0].From))
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				c.Offence = records.OffenceName(fedreportv1.Offence(k.off))
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				c.Channel = records.ChannelName(fedreportv1.Channel(k.ch))
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				c.VictimAge = records.VictimAgeName(fedreportv1.VictimAge(k.age))
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// deterministic is the one encoding hashed anywhere: the disclosure log's
// entry and response digests depend on it being stable.
var deterministic = proto.MarshalOptions{Deterministic: true}

// MaxAnswerBytes is the largest encoded Aggregate answer
// (grpcsrv.MaxAnswerBytes): every client with gRPC's default limits
// receives any answer a node gives.
const MaxAnswerBytes = grpcsrv.MaxAnswerBytes

// Aggregate answers an aggregate request for caller (the verified identity,
// or "local-admin"). It validates the request against the API and the
// policy, then in one read-write transaction reads the release and appends
// the disclosure log entry, so that the release logged is exactly the one
// answered. Refusals are *PolicyError, malformed requests *records.FieldError.
func (s *Store) Aggregate(req *fedreportv1.AggregateRequest, caller string) (*fedreportv1.AggregateResponse, error) {
	q, err := s.prepare(req)
	if err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// A coordinator asks only within one of its running rollups, which
	// every answer to it names in the disclosure log.
	if id, err := identity.Parse(caller); err == nil && id.Role == identity.RoleCoordinator {
		if err := grpcsrv.CheckRunningRollup(req.GetRollupId(), req.GetRollupStartedAt(), s.now()); err != nil {
			// A stolen coordinator certificate, or clocks apart: the
			// ministry's operator should see either.
			s.log.Warn("refused a coordinator outside a running rollup", "caller", caller, "err", err)
			return nil, err
		}
	}
	var resp *fedreportv1.AggregateResponse
	// fn may run more than once (bolt.DB.Batch retries); each run reads
	// the release afresh, and only its last successful run's resp is used.
	fn := func(tx *bolt.Tx) error {
		resp = nil
		meta := tx.Bucket(bucketMeta)
		cells, err := readAnswer(tx, q)
		if err != nil {
			return err
		}
		r := &fedreportv1.AggregateResponse{
			Member:         s.member,
			MinCellCount:   s.policy.MinCellCount,
			DataVersion:    getUint64(meta.Get(keyReleaseDataVersion)),
			Cells:          cells,
			ReleaseVersion: getUint64(meta.Get(keyReleaseVersion)),
		}
		if n := proto.Size(r); n > s.maxAnswerBytes {
			return &grpcsrv.AnswerTooLargeError{Cells: len(cells), Bytes: n, Limit: s.maxAnswerBytes}
		}
		seq, err := appendDisclosure(tx, s.now(), caller, q.req, r)
		if err != nil {
			return err
		}
		r.DisclosureSeq = seq
		resp = r
		return nil
	}
	start := time.Now()
	if s.aggregating.Add(1) > 1 {
		err = s.db.Batch(fn)
	} else {
		err = s.db.Update(fn)
	}
	s.aggregating.Add(-1)
	if err == nil {
		s.metrics.observeDisclosure(time.Since(start))
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	return resp, nil
}
