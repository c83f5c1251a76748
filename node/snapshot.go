package node

import (
	"cmp"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// maxSnapshotCells bounds the in-memory copy of the counters (16 bytes a
// cell); a store with more cells answers from bbolt cursors alone.
const maxSnapshotCells = 8 << 20

// The sizes of the dimensions of a counter cell, unknown included.
var (
	nOffences   = len(records.Offences())
	nChannels   = len(records.Channels())
	nVictimAges = len(records.VictimAges())
	// nCodes is the number of (offence, channel, age) combinations.
	nCodes = nOffences * nChannels * nVictimAges
)

// cellCode numbers a cell's (offence, channel, age) in the order of the
// counter keys, so that one small table lookup (accumulator.offsets) maps a
// cell to its group whatever the request groups by. The bytes must be
// valid enum values (counterKey.valid).
func cellCode(off, ch, age uint8) uint16 {
	return uint16((int(off)*nChannels+int(ch))*nVictimAges + int(age))
}

// cellEntry is one counter cell in memory.
type cellEntry struct {
	day  uint32
	code uint16 // cellCode
	n    uint64
}

// monthCell is the sum of one (offence, channel, age) over a calendar month.
type monthCell struct {
	code uint16 // cellCode
	n    uint64
}

// monthSums holds one metric's counters summed by calendar month, so that a
// request reads at most nCodes cells for each whole month it covers instead
// of up to 31 times as many day cells.
type monthSums struct {
	first uint32      // the month (records.MonthOf) of start[0]
	start []int       // month first+i is cells[start[i]:start[i+1]]
	cells []monthCell // by month, then code; no zero sums
}

// month returns the sums of month (records.MonthOf), nil outside the data.
func (ms *monthSums) month(month uint32) []monthCell {
	if month < ms.first || int(month-ms.first)+1 >= len(ms.start) {
		return nil
	}
	i := month - ms.first
	return ms.cells[ms.start[i]:ms.start[i+1]]
}

// sumMonths sums cells (sorted by day, then code) by month.
func sumMonths(cells []cellEntry) monthSums {
	if len(cells) == 0 {
		return monthSums{}
	}
	first, last := records.MonthOf(cells[0].day), records.MonthOf(cells[len(cells)-1].day)
	ms := monthSums{first: first, start: make([]int, 0, last-first+2)}
	acc := make([]uint64, nCodes)
	i := 0
	for month := first; month <= last; month++ {
		ms.start = append(ms.start, len(ms.cells))
		next := records.FirstDayOfMonth(month + 1)
		for ; i < len(cells) && cells[i].day < next; i++ {
			acc[cells[i].code] += cells[i].n
		}
		for code, n := range acc {
			if n != 0 {
				ms.cells = append(ms.cells, monthCell{code: uint16(code), n: n})
				acc[code] = 0
			}
		}
	}
	ms.start = append(ms.start, len(ms.cells))
	return ms
}

// snapshot is an immutable copy of the counters at one data version, sorted
// as the bucket is. Counters change only in transactions that increment the
// data version, so Aggregate may use a snapshot whose version equals the one
// it reads in its own transaction: the answer is exactly what bbolt would
// give, several times faster. Any other version falls back to the cursor.
type snapshot struct {
	version uint64
	cells   [6][]cellEntry // by metric number
	// prefix[m][i] is the sum of cells[m][:i].n, so that the total of any
	// day range is one subtraction after two binary searches.
	prefix [6][]uint64
	// months[m] is cells[m] summed by calendar month.
	months [6]monthSums
}

// span returns the index range of metric m's cells dated from..to.
func (sn *snapshot) span(m fedreportv1.Metric, from, to uint32) (int, int) {
	cells := sn.cells[m]
	lo, _ := slices.BinarySearchFunc(cells, from, func(c cellEntry, day uint32) int { return cmp.Compare(c.day, day) })
	hi, _ := slices.BinarySearchFunc(cells[lo:], to+1, func(c cellEntry, day uint32) int { return cmp.Compare(c.day, day) })
	return lo, lo + hi
}

// sum returns the total of metric m's cells in the index range [lo, hi).
func (sn *snapshot) sum(m fedreportv1.Metric, lo, hi int) uint64 {
	return sn.prefix[m][hi] - sn.prefix[m][lo]
}

// loadSnapshot copies the counters of tx, or returns nil when there are too many.
func loadSnapshot(tx *bolt.Tx) *snapshot {
	b := tx.Bucket(bucketCounters)
	if b.Stats().KeyN > maxSnapshotCells {
		return nil
	}
	sn := &snapshot{version: getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != counterKeyLen || len(v) != 8 || !counterKey(k).valid() || k[0] == 0 {
			return nil // malformed; the cursor path reports it
		}
		m := fedreportv1.Metric(k[0])
		sn.cells[m] = append(sn.cells[m], cellEntry{
			day:  binary.BigEndian.Uint32(k[1:5]),
			code: cellCode(k[5], k[6], k[7]),
			n:    binary.BigEndian.Uint64(v),
		})
	}
	for m, cells := range sn.cells {
		p := make([]uint64, len(cells)+1)
		for i, c := range cells {
			p[i+1] = p[i] + c.n
		}
		sn.prefix[m] = p
		sn.months[m] = sumMonths(cells)
	}
	return sn
}

// refreshSnapshot reloads the snapshot after a write. A failure only costs
// speed: Aggregate falls back to cursors while versions differ.
func (s *Store) refreshSnapshot() {
	var sn *snapshot
	if err := s.view(func(tx *bolt.Tx) error {
		sn = loadSnapshot(tx)
		return nil
	}); err != nil {
		s.log.Warn("reload the counter snapshot", "err", err)
		return
	}
	s.snap.Store(sn)
}
