package node

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The protected release (DESIGN.md "Disclosure policy and the protected
// release"). A node answers only from it: every answer is a sum of its cells.
//
// Inner cells are atom × offence × channel × victim_age, where the atoms are
// the common refinement of the release periods (calendar months cut at the
// named periods' edges). Release cells are release period × table cell; the
// atoms that are no release period (the 31 May a phase ending on 30 May
// leaves) are hidden cells: never published, protected like a primary when
// they hold 1..k-1 records.
//
// Time is cut into blocks, calendar years joined by any named period that
// spans them; no release cell crosses a block, so each (metric, block) is
// protected on its own and only the blocks a write touched are recomputed.

// The sizes of the dimensions of an inner cell, unknown included.
var (
	nOffences   = len(records.Offences())
	nChannels   = len(records.Channels())
	nVictimAges = len(records.VictimAges())
)

// Table masks: the dimensions of a published table. The total is 0.
const (
	maskOffence   = 1
	maskChannel   = 2
	maskVictimAge = 4
)

// relKey identifies a cell of the release: the metric, the period (or
// hidden atom), the table and the values of the table's dimensions (0 for a
// dimension not in it).
type relKey struct {
	metric       uint8
	from, to     uint32
	mask         uint8
	off, ch, age uint8
}

const relKeyLen = 13

func (k relKey) bytes() []byte {
	b := make([]byte, relKeyLen)
	b[0] = k.metric
	binary.BigEndian.PutUint32(b[1:], k.from)
	binary.BigEndian.PutUint32(b[5:], k.to)
	b[9], b[10], b[11], b[12] = k.mask, k.off, k.ch, k.age
	return b
}

func parseRelKey(b []byte) (relKey, bool) {
	if len(b) != relKeyLen {
		return relKey{}, false
	}
	return relKey{b[0], binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:]), b[9], b[10], b[11], b[12]}, true
}

// relCell is a stored release cell. A cell not stored is published as 0.
type relCell struct {
	// value is the published value; for a pending cell the value an earlier
	// release published; 0 for a suppressed one.
	value uint64
	// lower and upper hold the true value.
	lower, upper uint64
	suppressed   bool // the value is withheld
	pending      bool // held at an earlier release's value
}

const relCellLen = 25

func (c relCell) bytes() []byte {
	b := make([]byte, relCellLen)
	binary.BigEndian.PutUint64(b, c.value)
	binary.BigEndian.PutUint64(b[8:], c.lower)
	binary.BigEndian.PutUint64(b[16:], c.upper)
	if c.suppressed {
		b[24] |= 1
	}
	if c.pending {
		b[24] |= 2
	}
	return b
}

func parseRelCell(b []byte) (relCell, bool) {
	if len(b) != relCellLen || b[24]&^3 != 0 {
		return relCell{}, false
	}
	return relCell{
		value: binary.BigEndian.Uint64(b), lower: binary.BigEndian.Uint64(b[8:]), upper: binary.BigEndian.Uint64(b[16:]),
		suppressed: b[24]&1 != 0, pending: b[24]&2 != 0,
	}, true
}

// exact reports whether the cell's value is published as it is.
func (c relCell) exact() bool { return !c.suppressed && !c.pending }

// innerKey is an inner cell: a metric, the first day of an atom, and the
// dimension values.
type innerKey struct {
	metric       uint8
	atom         uint32
	off, ch, age uint8
}

const innerKeyLen = 8

func (k innerKey) bytes() []byte {
	b := make([]byte, innerKeyLen)
	b[0] = k.metric
	binary.BigEndian.PutUint32(b[1:], k.atom)
	b[5], b[6], b[7] = k.off, k.ch, k.age
	return b
}

// innerVal is what the release needs of an inner cell's records.
type innerVal struct {
	value   uint64 // sum of quantities
	records uint64 // contributing records
	maxQ    uint64 // the largest single quantity (dominance rule)
}

const innerValLen = 24

func (v innerVal) bytes() []byte {
	b := make([]byte, innerValLen)
	binary.BigEndian.PutUint64(b, v.value)
	binary.BigEndian.PutUint64(b[8:], v.records)
	binary.BigEndian.PutUint64(b[16:], v.maxQ)
	return b
}

func (v *innerVal) add(o innerVal) {
	v.value += o.value
	v.records += o.records
	v.maxQ = max(v.maxQ, o.maxQ)
}

// calendar is the release calendar of a policy, with what the release
// computation needs of it.
type calendar struct {
	*periods.Calendar
	// cuts are the named periods' edges (from and to+1), sorted: with the
	// first days of months, the atoms' first days.
	cuts []uint32
}

func newCalendar(c *periods.Calendar) *calendar {
	cal := &calendar{Calendar: c}
	for _, p := range c.Named() {
		cal.cuts = append(cal.cuts, p.From, p.To+1)
	}
	slices.Sort(cal.cuts)
	cal.cuts = slices.Compact(cal.cuts)
	return cal
}

// atomOf returns the first day of the atom day is in.
func (c *calendar) atomOf(day uint32) uint32 {
	start := records.FirstDayOfMonth(records.MonthOf(day))
	i, found := slices.BinarySearch(c.cuts, day)
	if found {
		return day
	}
	if i > 0 && c.cuts[i-1] > start {
		return c.cuts[i-1]
	}
	return start
}

// yearOf returns the calendar year of day.
func yearOf(day uint32) int {
	s := records.DateString(day)
	y := 0
	for _, ch := range s[:4] {
		y = y*10 + int(ch-'0')
	}
	return y
}

// firstDayOfYear returns the day number of 1 January of year y.
func firstDayOfYear(y int) uint32 {
	d, _ := records.ParseDate(fmt.Sprintf("%04d-01-01", y))
	return d
}

// blockOf returns the block (its first and last year) that year y is in:
// years joined by named periods that span them.
func (c *calendar) blockOf(y int) (first, last int) {
	first, last = y, y
	for changed := true; changed; {
		changed = false
		for _, p := range c.Named() {
			a, b := yearOf(p.From), yearOf(p.To)
			if b >= first && a <= last && (a < first || b > last) {
				first, last = min(first, a), max(last, b)
				changed = true
			}
		}
	}
	return first, last
}

// blockWindow returns the days of the block of year y.
func (c *calendar) blockWindow(y int) periods.Window {
	first, last := c.blockOf(y)
	return periods.Window{From: firstDayOfYear(first), To: firstDayOfYear(last+1) - 1}
}

// tableMask returns the mask of a table's dimensions.
func tableMask(dims []fedreportv1.Dimension) uint8 {
	var m uint8
	for _, d := range dims {
		switch d {
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			m |= maskOffence
		case fedreportv1.Dimension_DIMENSION_CHANNEL:
			m |= maskChannel
		case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
			m |= maskVictimAge
		}
	}
	return m
}

// sizes returns how many values each dimension of mask takes (1 when not in it).
func sizes(mask uint8) (no, nc, na int) {
	no, nc, na = 1, 1, 1
	if mask&maskOffence != 0 {
		no = nOffences
	}
	if mask&maskChannel != 0 {
		nc = nChannels
	}
	if mask&maskVictimAge != 0 {
		na = nVictimAges
	}
	return no, nc, na
}

// project returns the values of an inner cell's dimensions that mask keeps.
func project(mask uint8, off, ch, age uint8) (uint8, uint8, uint8) {
	if mask&maskOffence == 0 {
		off = 0
	}
	if mask&maskChannel == 0 {
		ch = 0
	}
	if mask&maskVictimAge == 0 {
		age = 0
	}
	return off, ch, age
}

// satAdd adds without wrapping: a bound past the largest number is unbounded.
func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func cmpRelKey(a, b relKey) int {
	return cmp.Or(cmp.Compare(a.metric, b.metric), cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to),
		cmp.Compare(a.mask, b.mask), cmp.Compare(a.off, b.off), cmp.Compare(a.ch, b.ch), cmp.Compare(a.age, b.age))
}

// readInner sums the records of tx into inner cells.
func readInner(tx *bolt.Tx, cal *calendar) (map[innerKey]innerVal, error) {
	inner := map[innerKey]innerVal{}
	err := tx.Bucket(bucketRecords).ForEach(func(id, v []byte) error {
		k, q, ok := decodeRecordValue(v)
		if !ok {
			return &CorruptError{Problem: fmt.Sprintf("record %q has a malformed value", id)}
		}
		ik := innerKey{uint8(k.metric()), cal.atomOf(k.day()), uint8(k.offence()), uint8(k.channel()), uint8(k.victimAge())}
		iv := inner[ik]
		iv.add(innerVal{uint64(q), 1, uint64(q)})
		inner[ik] = iv
		return nil
	})
	return inner, err
}
