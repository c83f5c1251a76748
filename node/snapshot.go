package node

import (
	"cmp"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// maxSnapshotCells bounds the in-memory copy of the counters (16 bytes a
// cell); a store with more cells answers from bbolt cursors alone.
const maxSnapshotCells = 8 << 20

// cellEntry is one counter cell in memory.
type cellEntry struct {
	day     uint32
	offence uint8
	channel uint8
	age     uint8
	n       uint64
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
			day:     binary.BigEndian.Uint32(k[1:5]),
			offence: k[5],
			channel: k[6],
			age:     k[7],
			n:       binary.BigEndian.Uint64(v),
		})
	}
	for m, cells := range sn.cells {
		p := make([]uint64, len(cells)+1)
		for i, c := range cells {
			p[i+1] = p[i] + c.n
		}
		sn.prefix[m] = p
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
