package node

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
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

// groupKey identifies one output cell of the sparse accumulator: the
// metric's position in the request and the values of the grouped dimensions
// (zero when not grouped).
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

// strides returns the dense strides of offence, channel and age (zero for a
// dimension not grouped) and the size of one (metric, month) block.
func strides(byOff, byCh, byAge bool) (sOff, sCh, sAge, block int) {
	block = 1
	if byAge {
		sAge, block = block, block*nVictimAges
	}
	if byCh {
		sCh, block = block, block*nChannels
	}
	if byOff {
		sOff, block = block, block*nOffences
	}
	return sOff, sCh, sAge, block
}

// codeOffsets[g] maps a cellCode to its offset in a (metric, month) block
// of the dense accumulator for grouping g (bit 0 offence, bit 1 channel,
// bit 2 victim_age). Built once: no request pays for it.
var codeOffsets = makeCodeOffsets()

func makeCodeOffsets() (t [8][]int32) {
	for g := range t {
		sOff, sCh, sAge, _ := strides(g&1 != 0, g&2 != 0, g&4 != 0)
		t[g] = make([]int32, nCodes)
		for code := range nCodes {
			off, ch, age := decodeCellCode(uint16(code))
			t[g][code] = int32(int(off)*sOff + int(ch)*sCh + int(age)*sAge)
		}
	}
	return t
}

// decodeCellCode is the inverse of cellCode.
func decodeCellCode(code uint16) (off, ch, age uint8) {
	c := int(code)
	return uint8(c / (nVictimAges * nChannels)), uint8(c / nVictimAges % nChannels), uint8(c % nVictimAges)
}

// accumulator sums counter cells into the request's groups. A dense array
// indexed by (metric, month, offence, channel, age), with a zero stride for
// each dimension not grouped, costs one table lookup and one addition per
// cell and no branch.
type accumulator struct {
	q          *query
	byMonth    bool
	firstMonth uint32
	nMonth     int
	// strides of the dense index; zero for a dimension not grouped.
	sMetric, sMonth, sOff, sCh, sAge int
	offsets                          []int32 // codeOffsets of the request's grouping
	dense                            []uint64
	sparse                           map[groupKey]uint64 // when dense would be too large

	lastDay   uint32
	lastMonth int
}

func newAccumulator(q *query) *accumulator {
	a := &accumulator{q: q, nMonth: 1, lastDay: ^uint32(0)}
	g := 0
	for _, d := range q.groupBy {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			a.byMonth = true
			a.firstMonth = records.MonthOf(q.from)
			a.nMonth = int(records.MonthOf(q.to)-a.firstMonth) + 1
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			g |= 1
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			g |= 2
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			g |= 4
		}
	}
	var block int
	a.sOff, a.sCh, a.sAge, block = strides(g&1 != 0, g&2 != 0, g&4 != 0)
	a.offsets = codeOffsets[g]
	if a.byMonth {
		a.sMonth = block
	}
	a.sMetric = block * a.nMonth
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
	a.addCode(mi, month, cellCode(off, ch, age), n)
}

// addCode counts n for the cells of code in the request's month number
// month (0 when not grouped by month).
func (a *accumulator) addCode(mi, month int, code uint16, n uint64) {
	if a.dense != nil {
		a.dense[mi*a.sMetric+month*a.sMonth+int(a.offsets[code])] += n
		return
	}
	k := groupKey{metric: uint8(mi)}
	if a.byMonth {
		k.month = a.firstMonth + uint32(month)
	}
	off, ch, age := decodeCellCode(code)
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

// addDays counts day cells that all fall in the request's month number month.
func (a *accumulator) addDays(mi, month int, cells []cellEntry) {
	if a.dense == nil {
		for _, c := range cells {
			a.addCode(mi, month, c.code, c.n)
		}
		return
	}
	block, offsets := a.dense[mi*a.sMetric+month*a.sMonth:], a.offsets
	for i := range cells {
		block[offsets[cells[i].code]] += cells[i].n
	}
}

// addMonth counts the sums of a whole month, the request's month number month.
func (a *accumulator) addMonth(mi, month int, cells []monthCell) {
	if a.dense == nil {
		for _, c := range cells {
			a.addCode(mi, month, c.code, c.n)
		}
		return
	}
	block, offsets := a.dense[mi*a.sMetric+month*a.sMonth:], a.offsets
	for i := range cells {
		block[offsets[cells[i].code]] += cells[i].n
	}
}

// fromSnapshot counts the request from sn: totals and months-only splits
// from prefix sums, whole months from the month sums, and only the days of
// a month the period cuts (at its edges) from day cells. A nine-month
// request by offence so reads ~12k sums instead of ~130k day cells.
func (a *accumulator) fromSnapshot(sn *snapshot) {
	q := a.q
	totalsOnly := a.sOff == 0 && a.sCh == 0 && a.sAge == 0
	for mi, m := range q.metrics {
		if totalsOnly && !a.byMonth {
			lo, hi := sn.span(m, q.from, q.to)
			a.addCode(mi, 0, 0, sn.sum(m, lo, hi))
			continue
		}
		ms := &sn.months[m]
		if len(ms.start) == 0 {
			continue // no cells
		}
		// Months without data add nothing: a period of decades costs
		// only the months the data covers.
		first := max(records.MonthOf(q.from), ms.first)
		last := min(records.MonthOf(q.to), ms.first+uint32(len(ms.start))-2)
		for month := first; month <= last; month++ {
			start, next := records.FirstDayOfMonth(month), records.FirstDayOfMonth(month+1)
			from, to := max(start, q.from), min(next-1, q.to)
			pos := 0
			if a.byMonth {
				pos = int(month - a.firstMonth)
			}
			switch {
			case totalsOnly:
				lo, hi := sn.span(m, from, to)
				a.addCode(mi, pos, 0, sn.sum(m, lo, hi))
			case from == start && to == next-1:
				a.addMonth(mi, pos, ms.month(month))
			default:
				lo, hi := sn.span(m, from, to)
				a.addDays(mi, pos, sn.cells[m][lo:hi])
			}
		}
	}
}

// count computes the raw (unsuppressed) counts of q from the counters of
// tx, or from snap when it holds exactly the counters of tx's data version.
// Per metric it is one range scan over metric|from .. metric|to: its cost
// grows with the days and cells in range, never with the records. From the
// snapshot it grows with the months in range (fromSnapshot).
func count(tx *bolt.Tx, version uint64, snap *snapshot, q *query) (*accumulator, error) {
	a := newAccumulator(q)
	if snap != nil && snap.version == version {
		a.fromSnapshot(snap)
		return a, nil
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
	return a, nil
}

// cellLabels are the dimension values of one cell, as disclosed.
type cellLabels struct {
	metric                             fedreportv1.Metric
	month, offence, channel, victimAge string
}

// cells turns the counts into the cells disclosed under k: without
// group_by one cell per requested metric (zero included), with group_by only
// non-zero cells; sorted by metric in request order, then by each grouped
// dimension in group_by order (months chronologically, other values in enum
// order, unknown first).
func (a *accumulator) cells(k uint32) []*fedreportv1.Cell {
	if a.sparse != nil {
		return sparseCells(a.q, a.sparse, k)
	}
	n := a.numCells()
	slab := make([]fedreportv1.Cell, n) // one allocation for every cell
	out := make([]*fedreportv1.Cell, 0, n)
	a.walk(func(l *cellLabels, v uint64) {
		c := &slab[len(out)]
		c.Metric, c.Month, c.Offence, c.Channel, c.VictimAge = l.metric, l.month, l.offence, l.channel, l.victimAge
		suppress(c, v, k)
		out = append(out, c)
	})
	return out
}

// numCells is how many cells the dense accumulator discloses.
func (a *accumulator) numCells() int {
	if a.sparse != nil { // grouped: only a long period by every dimension
		n := 0
		for _, v := range a.sparse {
			if v != 0 {
				n++
			}
		}
		return n
	}
	if len(a.q.groupBy) == 0 {
		return len(a.dense)
	}
	n := 0
	for _, v := range a.dense {
		if v != 0 {
			n++
		}
	}
	return n
}

// appendWire appends the cells disclosed under k as the repeated field num,
// byte for byte appendCells(b, num, a.cells(k)) without making the cells:
// for an answer by month and offence the 315 messages were a third of the
// node's allocation per call.
func (a *accumulator) appendWire(b []byte, num protowire.Number, k uint32) []byte {
	if a.sparse != nil {
		return appendCells(b, num, sparseCells(a.q, a.sparse, k))
	}
	b = slices.Grow(b, cellBytes*a.numCells())
	a.walk(func(l *cellLabels, v uint64) {
		count, suppressed, lower, upper := disclosed(v, k)
		b = appendCell(b, num, l.metric, "", l, count, suppressed, lower, upper)
	})
	return b
}

// walk calls emit for each cell of the dense accumulator in output order
// (see cells) with its labels and raw count. l is reused between calls.
func (a *accumulator) walk(emit func(l *cellLabels, v uint64)) {
	q := a.q
	grouped := len(q.groupBy) > 0
	// The dense array is walked in output order: an odometer over the
	// grouped dimensions in group_by order, the last one turning fastest.
	type axis struct {
		d            fedreportv1.Dimension
		stride, size int
	}
	axes := make([]axis, len(q.groupBy))
	for i, d := range q.groupBy {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			axes[i] = axis{d, a.sMonth, a.nMonth}
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			axes[i] = axis{d, a.sOff, nOffences}
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			axes[i] = axis{d, a.sCh, nChannels}
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			axes[i] = axis{d, a.sAge, nVictimAges}
		}
	}
	var months []string // names, made once per month
	if a.byMonth {
		months = make([]string, a.nMonth)
	}
	pos := make([]int, len(axes))
	var l cellLabels
	for mi, m := range q.metrics {
		for {
			i := mi * a.sMetric
			for j, ax := range axes {
				i += pos[j] * ax.stride
			}
			if v := a.dense[i]; v != 0 || !grouped {
				l.metric = m
				for j, ax := range axes {
					switch ax.d {
					case fedreportv1.Dimension_DIMENSION_MONTH:
						if months[pos[j]] == "" {
							months[pos[j]] = records.MonthString(a.firstMonth + uint32(pos[j]))
						}
						l.month = months[pos[j]]
					case fedreportv1.Dimension_DIMENSION_OFFENCE:
						l.offence = records.OffenceName(fedreportv1.Offence(pos[j]))
					case fedreportv1.Dimension_DIMENSION_CHANNEL:
						l.channel = records.ChannelName(fedreportv1.Channel(pos[j]))
					case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
						l.victimAge = records.VictimAgeName(fedreportv1.VictimAge(pos[j]))
					}
				}
				emit(&l, v)
			}
			j := len(pos) - 1
			for ; j >= 0; j-- {
				if pos[j]++; pos[j] < axes[j].size {
					break
				}
				pos[j] = 0
			}
			if j < 0 {
				break
			}
		}
	}
}

// sparseCells is cells for the sparse accumulator.
func sparseCells(q *query, counts map[groupKey]uint64, k uint32) []*fedreportv1.Cell {
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

// answer is what Aggregate discloses for one query at one data version.
type answer struct {
	version uint64
	acc     *accumulator
	// wire is the deterministic encoding of the cells as the field cells of
	// an AggregateResponse. It is made once and reused for the response
	// digest, the disclosure entry (disclosure.go) and the response the
	// node's server sends (AggregateEncoded): with hundreds of cells the
	// encoding costs more than the counting.
	wire []byte
}

func (s *Store) answer(a *accumulator, version uint64) *answer {
	return &answer{version: version, acc: a, wire: a.appendWire(nil, responseCellsField, s.policy.MinCellCount)}
}

// MaxAnswerBytes is the largest encoded cells of one Aggregate answer
// (grpcsrv.MaxAnswerBytes): every client with gRPC's default limits
// receives any answer a node gives. An answer is sparse, so this bounds the
// cells that are not zero: about 90,000 of them, e.g. 27 years by month,
// offence and channel with every cell in use.
const MaxAnswerBytes = grpcsrv.MaxAnswerBytes

// fits refuses an answer too large to send, before anything is logged.
func (s *Store) fits(ans *answer) error {
	if len(ans.wire) > s.maxAnswerBytes {
		return &grpcsrv.AnswerTooLargeError{Cells: ans.acc.numCells(), Bytes: len(ans.wire), Limit: s.maxAnswerBytes}
	}
	return nil
}

// responseCellsField is the field number of AggregateResponse.cells.
const responseCellsField = 4

// appendCells appends cells as the repeated message field num, exactly as
// deterministic marshalling writes them (TestCellEncodingMatchesProto).
// Written by hand because the generic marshaller costs more than counting
// the cells, and a nine-month answer by month and offence has 315 of them.
// The strings are the node's own names, valid UTF-8, which the marshaller
// would check.
func appendCells(b []byte, num protowire.Number, cells []*fedreportv1.Cell) []byte {
	for _, c := range cells {
		l := cellLabels{c.GetMetric(), c.GetMonth(), c.GetOffence(), c.GetChannel(), c.GetVictimAge()}
		b = appendCell(b, num, c.GetMetric(), c.GetMember(), &l, c.GetCount(), c.GetSuppressedCells(), c.GetLowerBound(), c.GetUpperBound())
	}
	return b
}

// appendCell appends one cell as field num (see appendCells).
func appendCell(b []byte, num protowire.Number, metric fedreportv1.Metric, member string, l *cellLabels, count uint64, suppressed uint32, lower, upper uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	// A cell's body is shorter than 128 bytes, so its length takes one
	// byte; it is written after the body, and a longer body is moved to
	// make room.
	at := len(b)
	b = append(b, 0)
	b = appendVarintField(b, 1, uint64(metric))
	b = appendStringField(b, 2, member)
	b = appendStringField(b, 3, l.month)
	b = appendStringField(b, 4, l.offence)
	b = appendStringField(b, 5, l.channel)
	b = appendStringField(b, 6, l.victimAge)
	b = appendVarintField(b, 7, count)
	b = appendVarintField(b, 8, uint64(suppressed))
	b = appendVarintField(b, 9, lower)
	b = appendVarintField(b, 10, upper)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	var ln [binary.MaxVarintLen64]byte
	lb := protowire.AppendVarint(ln[:0], uint64(n))
	b = append(b, lb[1:]...)
	copy(b[at+len(lb):], b[at+1:at+1+n])
	copy(b[at:], lb)
	return b
}

// cellBytes is a size for the encoding of a cell (about 40 bytes with month
// and offence) that is rarely exceeded.
const cellBytes = 48

// cellsCap is a capacity for the encoding of cells that is rarely exceeded.
func cellsCap(cells []*fedreportv1.Cell) int { return cellBytes * len(cells) }

// appendResponseHead appends the fields of r before its cells (1-3).
// Followed by appendCells of its cells and appendResponseTail, it makes r's
// deterministic encoding.
func appendResponseHead(b []byte, r *fedreportv1.AggregateResponse) []byte {
	b = appendStringField(b, 1, r.GetMember())
	b = appendVarintField(b, 2, uint64(r.GetMinCellCount()))
	return appendVarintField(b, 3, r.GetDataVersion())
}

// appendResponseTail appends the fields of r after its cells, each omitted
// when zero: disclosure_seq (5) and rollup_id (6), which only a coordinator
// answering as a member sets; a node's answer never has it.
func appendResponseTail(b []byte, r *fedreportv1.AggregateResponse) []byte {
	b = appendVarintField(b, 5, r.GetDisclosureSeq())
	return appendStringField(b, 6, r.GetRollupId())
}

// appendVarintField appends a proto3 scalar field numbered below 16 (a
// one-byte tag), omitted when zero. An enum's int32 is sign-extended first,
// as the marshaller does.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, byte(num)<<3|byte(protowire.VarintType))
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendStringField appends a proto3 string field numbered below 16,
// omitted when empty.
func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, byte(num)<<3|byte(protowire.BytesType))
	if len(v) < 0x80 {
		b = append(b, byte(len(v)))
	} else {
		b = protowire.AppendVarint(b, uint64(len(v)))
	}
	return append(b, v...)
}

// Aggregate answers an aggregate request for caller (the verified identity,
// or "local-admin"). It validates the request, applies the policy, and in one
// read-write transaction reads the counters and appends the disclosure log
// entry, so that the data version and the cells logged are exactly those
// answered. Refusals are *PolicyError, malformed requests *records.FieldError.
func (s *Store) Aggregate(req *fedreportv1.AggregateRequest, caller string) (*fedreportv1.AggregateResponse, error) {
	resp, ans, err := s.aggregate(req, caller)
	if err != nil {
		return nil, err
	}
	resp.Cells = ans.acc.cells(s.policy.MinCellCount)
	return resp, nil
}

// AggregateEncoded is Aggregate answering with the response's deterministic
// encoding, byte for byte proto.Marshal of what Aggregate returns
// (TestAggregateDisclosureBytesMatchProto), in pieces to be sent one after the
// other: the fields before the cells, the cells as the disclosure log entry
// was written from them, and the disclosure's seq. The node's server sends
// them as they are, so no cell is ever a message or copied again.
func (s *Store) AggregateEncoded(req *fedreportv1.AggregateRequest, caller string) ([][]byte, error) {
	resp, ans, err := s.aggregate(req, caller)
	if err != nil {
		return nil, err
	}
	head := appendResponseHead(make([]byte, 0, 32+len(resp.GetMember())), resp)
	return [][]byte{head, ans.wire, appendResponseTail(nil, resp)}, nil
}

// aggregate answers req for caller and logs the disclosure: the response
// without its cells, and the answer they are in.
func (s *Store) aggregate(req *fedreportv1.AggregateRequest, caller string) (*fedreportv1.AggregateResponse, *answer, error) {
	q, err := s.prepare(req)
	if err != nil {
		return nil, nil, err
	}
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	// The answer is computed from the snapshot before the write
	// transaction, which serialises every Aggregate: concurrent calls count
	// and encode in parallel and hold the writer only to append the log.
	// The transaction uses it only when the snapshot's version is still the
	// file's; otherwise it counts afresh.
	var early *answer
	if sn := s.snap.Load(); sn != nil {
		a := newAccumulator(q)
		a.fromSnapshot(sn)
		early = s.answer(a, sn.version)
		if err := s.fits(early); err != nil {
			return nil, nil, err
		}
	}
	var (
		resp     *fedreportv1.AggregateResponse
		answered *answer
	)
	// fn may run more than once (bolt.DB.Batch retries); each run reads
	// the version afresh, and only its last successful run's resp is used.
	fn := func(tx *bolt.Tx) error {
		resp, answered = nil, nil
		version := getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))
		ans := early
		if ans == nil || ans.version != version {
			a, err := count(tx, version, s.snap.Load(), q)
			if err != nil {
				return err
			}
			ans = s.answer(a, version)
			if err := s.fits(ans); err != nil {
				return err
			}
		}
		r := &fedreportv1.AggregateResponse{
			Member:       s.member,
			MinCellCount: s.policy.MinCellCount,
			DataVersion:  version,
		}
		seq, err := appendDisclosure(tx, s.now(), caller, q.req, r, ans.wire)
		if err != nil {
			return err
		}
		r.DisclosureSeq = seq
		resp, answered = r, ans
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
		return nil, nil, ErrClosed
	}
	if err != nil {
		return nil, nil, fmt.Errorf("aggregate: %w", err)
	}
	return resp, answered, nil
}
