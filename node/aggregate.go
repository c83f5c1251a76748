package node

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// MaxRollupIDLen is the longest rollup_id a request may carry.
const MaxRollupIDLen = 128

// query is a validated, normalised aggregate request.
type query struct {
	req      *fedreportv1.AggregateRequest // normalised: metrics filled in
	metrics  []fedreportv1.Metric
	from, to uint32 // day numbers, inclusive
	groupBy  []fedreportv1.Dimension
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
	if id := req.GetRollupId(); len(id) > MaxRollupIDLen || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return nil, &records.FieldError{Field: "rollup_id", Value: id, Problem: fmt.Sprintf("is not an id (want at most %d printable ASCII characters without spaces)", MaxRollupIDLen)}
	}
	// The policy, after the request is known to be well formed.
	for _, d := range q.groupBy {
		if !s.policy.allows(d) {
			allowed := "none"
			if len(s.policy.AllowedDimensions) > 0 {
				allowed = records.DimensionNames(s.policy.AllowedDimensions)
			}
			return nil, &PolicyError{
				Reason: ReasonDimensionNotAllowed,
				Field:  "group_by",
				Msg: fmt.Sprintf("member %s's disclosure policy does not allow grouping by %s (allowed: %s); remove %s from group_by",
					s.member, records.DimensionName(d), allowed, records.DimensionName(d)),
			}
		}
	}
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
	q.req = &fedreportv1.AggregateRequest{
		Metrics:  q.metrics,
		From:     req.GetFrom(),
		To:       req.GetTo(),
		GroupBy:  q.groupBy,
		RollupId: req.GetRollupId(),
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

// groupKey identifies one output cell: the metric's position in the request
// and the values of the grouped dimensions (zero when not grouped).
type groupKey struct {
	metric  uint8
	month   uint32
	offence uint8
	channel uint8
	age     uint8
}

// maxDense bounds the dense accumulator (entries of 8 bytes); a request
// whose grouped space is larger (decades by every dimension) uses a map.
const maxDense = 1 << 18

// accumulator sums counter cells into the request's groups. A dense array
// indexed by (metric, month, offence, channel, age), with a zero stride for
// each dimension not grouped, costs a couple of nanoseconds per counter
// cell and no branch; that keeps a scan of every cell of a nine-month
// operation well under a millisecond.
type accumulator struct {
	q          *query
	byMonth    bool
	firstMonth uint32
	// strides of the dense index; zero for a dimension not grouped.
	sMetric, sMonth, sOff, sCh, sAge int
	nMonth, nOff, nCh, nAge          int
	dense                            []uint64
	sparse                           map[groupKey]uint64 // when dense would be too large

	lastDay   uint32
	lastMonth int
}

func newAccumulator(q *query) *accumulator {
	a := &accumulator{q: q, nMonth: 1, nOff: 1, nCh: 1, nAge: 1, lastDay: ^uint32(0)}
	var byOff, byCh, byAge bool
	for _, d := range q.groupBy {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			a.byMonth = true
			a.firstMonth = records.MonthOf(q.from)
			a.nMonth = int(records.MonthOf(q.to)-a.firstMonth) + 1
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			byOff, a.nOff = true, len(records.Offences())
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			byCh, a.nCh = true, len(records.Channels())
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			byAge, a.nAge = true, len(records.VictimAges())
		}
	}
	if byAge {
		a.sAge = 1
	}
	if byCh {
		a.sCh = a.nAge
	}
	if byOff {
		a.sOff = a.nAge * a.nCh
	}
	if a.byMonth {
		a.sMonth = a.nAge * a.nCh * a.nOff
	}
	a.sMetric = a.nAge * a.nCh * a.nOff * a.nMonth
	if size := len(q.metrics) * a.sMetric; size <= maxDense {
		a.dense = make([]uint64, size)
	} else {
		a.sparse = make(map[groupKey]uint64)
	}
	return a
}

// add counts n for counter cell (metric position mi, day, offence, channel,
// age). The dimension bytes must be valid enum values (counterKey.valid).
func (a *accumulator) add(mi int, day uint32, off, ch, age uint8, n uint64) {
	month := 0
	if a.byMonth {
		if day != a.lastDay {
			a.lastDay, a.lastMonth = day, int(records.MonthOf(day)-a.firstMonth)
		}
		month = a.lastMonth
	}
	if a.dense != nil {
		a.dense[mi*a.sMetric+month*a.sMonth+int(off)*a.sOff+int(ch)*a.sCh+int(age)*a.sAge] += n
		return
	}
	k := groupKey{metric: uint8(mi)}
	if a.byMonth {
		k.month = a.firstMonth + uint32(month)
	}
	if a.sOff != 0 {
		k.offence = off
	}
	if a.sCh != 0 {
		k.channel = ch
	}
	if a.sAge != 0 {
		k.age = age
	}
	a.sparse[k] += n
}

// addMonth counts n for a whole month (metric position mi) of a request
// grouped by month only.
func (a *accumulator) addMonth(mi int, month uint32, n uint64) {
	a.dense[mi*a.sMetric+int(month-a.firstMonth)*a.sMonth] += n
}

// result returns the counts by group: every group with a non-zero count,
// and without group_by every metric.
func (a *accumulator) result() map[groupKey]uint64 {
	if a.sparse != nil {
		return a.sparse
	}
	out := make(map[groupKey]uint64)
	for i, n := range a.dense {
		if n == 0 && len(a.q.groupBy) > 0 {
			continue
		}
		k := groupKey{metric: uint8(i / a.sMetric)}
		r := i % a.sMetric
		if a.byMonth {
			k.month = a.firstMonth + uint32(r/a.sMonth)
			r %= a.sMonth
		}
		if a.sOff != 0 {
			k.offence = uint8(r / a.sOff)
			r %= a.sOff
		}
		if a.sCh != 0 {
			k.channel = uint8(r / a.sCh)
			r %= a.sCh
		}
		if a.sAge != 0 {
			k.age = uint8(r)
		}
		out[k] += n
	}
	return out
}

// count computes the raw (unsuppressed) counts of q from the counters of
// tx, or from snap when it holds exactly the counters of tx's data version.
// Per metric it is one range scan over metric|from .. metric|to: its cost
// grows with the days and cells in range, never with the records. From the
// snapshot, totals and months-only splits cost a few binary searches.
func count(tx *bolt.Tx, version uint64, snap *snapshot, q *query) (map[groupKey]uint64, error) {
	a := newAccumulator(q)
	if snap != nil && snap.version == version {
		monthsOnly := a.byMonth && a.dense != nil && a.sOff == 0 && a.sCh == 0 && a.sAge == 0
		for mi, m := range q.metrics {
			lo, hi := snap.span(m, q.from, q.to)
			switch {
			case len(q.groupBy) == 0:
				a.dense[mi] += snap.sum(m, lo, hi)
			case monthsOnly:
				for month := a.firstMonth; month < a.firstMonth+uint32(a.nMonth); month++ {
					first := max(records.FirstDayOfMonth(month), q.from)
					last := min(records.FirstDayOfMonth(month+1)-1, q.to)
					l, h := snap.span(m, first, last)
					a.addMonth(mi, month, snap.sum(m, l, h))
				}
			default:
				cells := snap.cells[m][lo:hi]
				for i := range cells {
					c := &cells[i]
					a.add(mi, c.day, c.offence, c.channel, c.age, c.n)
				}
			}
		}
		return a.result(), nil
	}
	c := tx.Bucket(bucketCounters).Cursor()
	var seek [5]byte
	for mi, m := range q.metrics {
		seek[0] = byte(m)
		binary.BigEndian.PutUint32(seek[1:], q.from)
		for k, v := c.Seek(seek[:]); k != nil; k, v = c.Next() {
			if len(k) != counterKeyLen || len(v) != 8 || !counterKey(k).valid() {
				return nil, &CorruptError{Problem: fmt.Sprintf("counter key %x has a malformed key or value", k)}
			}
			if k[0] != byte(m) {
				break
			}
			day := binary.BigEndian.Uint32(k[1:5])
			if day > q.to {
				break
			}
			a.add(mi, day, k[5], k[6], k[7], binary.BigEndian.Uint64(v))
		}
	}
	return a.result(), nil
}

// cells turns raw counts into the cells disclosed under k: without
// group_by one cell per requested metric (zero included), with group_by only
// non-zero cells; sorted by metric in request order, then by each grouped
// dimension in group_by order (months chronologically, other values in enum
// order, unknown first).
func cells(q *query, counts map[groupKey]uint64, k uint32) []*fedreportv1.Cell {
	keys := make([]groupKey, 0, len(counts))
	for g, n := range counts {
		if n > 0 || len(q.groupBy) == 0 {
			keys = append(keys, g)
		}
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		if c := cmp.Compare(a.metric, b.metric); c != 0 {
			return c
		}
		for _, d := range q.groupBy {
			var c int
			switch d {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				c = cmp.Compare(a.month, b.month)
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				c = cmp.Compare(a.offence, b.offence)
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				c = cmp.Compare(a.channel, b.channel)
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				c = cmp.Compare(a.age, b.age)
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	out := make([]*fedreportv1.Cell, len(keys))
	for i, g := range keys {
		c := &fedreportv1.Cell{Metric: q.metrics[g.metric]}
		for _, d := range q.groupBy {
			switch d {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				c.Month = records.MonthString(g.month)
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				c.Offence = records.OffenceName(fedreportv1.Offence(g.offence))
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				c.Channel = records.ChannelName(fedreportv1.Channel(g.channel))
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				c.VictimAge = records.VictimAgeName(fedreportv1.VictimAge(g.age))
			}
		}
		suppress(c, counts[g], k)
		out[i] = c
	}
	return out
}

// deterministic is the one encoding hashed anywhere: the disclosure log's
// entry and response digests depend on it being stable.
var deterministic = proto.MarshalOptions{Deterministic: true}

// Aggregate answers an aggregate request for caller (the verified identity,
// or "local-admin"). It validates the request, applies the policy, and in one
// read-write transaction reads the counters and appends the disclosure log
// entry, so that the data version and the cells logged are exactly those
// answered. Refusals are *PolicyError, malformed requests *records.FieldError.
func (s *Store) Aggregate(req *fedreportv1.AggregateRequest, caller string) (*fedreportv1.AggregateResponse, error) {
	q, err := s.prepare(req)
	if err != nil {
		return nil, err
	}
	var resp *fedreportv1.AggregateResponse
	// fn may run more than once (bolt.DB.Batch retries); it computes
	// everything afresh and only its last successful run's resp is used.
	fn := func(tx *bolt.Tx) error {
		resp = nil
		version := getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))
		counts, err := count(tx, version, s.snap.Load(), q)
		if err != nil {
			return err
		}
		r := &fedreportv1.AggregateResponse{
			Member:       s.member,
			MinCellCount: s.policy.MinCellCount,
			DataVersion:  version,
			Cells:        cells(q, counts, s.policy.MinCellCount),
		}
		seq, err := appendDisclosure(tx, s.now(), caller, q.req, r)
		if err != nil {
			return err
		}
		r.DisclosureSeq = seq
		resp = r
		return nil
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.aggregating.Add(1) > 1 {
		err = s.db.Batch(fn)
	} else {
		err = s.db.Update(fn)
	}
	s.aggregating.Add(-1)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("aggregate: %w", err)
	}
	return resp, nil
}
