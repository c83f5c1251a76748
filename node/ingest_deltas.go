package node

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// cellDeltas accumulates an ingest stream's counter deltas without a
// lookup per record in a table of every cell: the deltas are appended as
// they come and merged into sorted per-cell sums whenever the appended ones
// reach half as many as the sums. Memory stays bounded by the number of
// cells, each delta is sorted once and copied a few times, and Commit gets
// the cells in key order, as bbolt wants them.
type cellDeltas struct {
	sums    []cellDelta // ascending keys, distinct
	pending []cellDelta // unsorted
	spare   []cellDelta // the merge's output buffer
}

// cellDelta is a counter key (big-endian, so that its order is the
// key's) and the change of its count.
type cellDelta struct {
	key   uint64
	delta int64
}

// minPendingDeltas is how many deltas cellDeltas appends at least before
// it merges.
const minPendingDeltas = 1 << 14

func (c *cellDeltas) add(k counterKey, d int64) {
	c.pending = append(c.pending, cellDelta{binary.BigEndian.Uint64(k[:]), d})
	if len(c.pending) >= max(minPendingDeltas, len(c.sums)/2) {
		c.compact()
	}
}

// compact merges the pending deltas into the sums, dropping zero sums.
func (c *cellDeltas) compact() {
	if len(c.pending) == 0 {
		return
	}
	slices.SortFunc(c.pending, func(a, b cellDelta) int { return cmp.Compare(a.key, b.key) })
	out := c.spare[:0]
	push := func(e cellDelta) {
		if n := len(out); n > 0 && out[n-1].key == e.key {
			out[n-1].delta += e.delta
		} else {
			out = append(out, e)
		}
	}
	i, j := 0, 0
	for i < len(c.sums) || j < len(c.pending) {
		if j == len(c.pending) || i < len(c.sums) && c.sums[i].key <= c.pending[j].key {
			push(c.sums[i])
			i++
		} else {
			push(c.pending[j])
			j++
		}
	}
	out = slices.DeleteFunc(out, func(e cellDelta) bool { return e.delta == 0 })
	c.sums, c.spare = out, c.sums[:0]
	c.pending = c.pending[:0]
}

// sorted returns the non-zero sums in ascending key order.
func (c *cellDeltas) sorted() []cellDelta {
	c.compact()
	return c.sums
}
