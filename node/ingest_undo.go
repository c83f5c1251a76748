package node

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sort"
	"strings"
)

// An ingest stream writes one undo entry per batch to the undo bucket
// (schema.go), keyed undoBatchPrefix | seq, holding every record_id of the
// batch with its previous value. The batches a stream writes before it
// leaves key order have disjoint id ranges, which Ingest keeps in memory
// (streamSpans) to find the entry that may hold an id; the batches of its
// merged spill file come after all of them. Rollback (ingest_rollback.go)
// and verify read the entries back.

// undoBatchPrefix starts the key of an undo entry; a key without it is
// not one (isUndoBatchKey).
const undoBatchPrefix = 0x00

// undoBatchKeyLen is the length of a batch undo key: prefix | seq(8).
const undoBatchKeyLen = 1 + 8

func undoBatchKey(seq uint64) []byte {
	k := make([]byte, undoBatchKeyLen)
	k[0] = undoBatchPrefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// isUndoBatchKey reports whether an undo key is a batch entry's.
func isUndoBatchKey(k []byte) bool { return len(k) > 0 && k[0] == undoBatchPrefix }

// undoBatch is the value of a batch undo entry: count(4) | count offsets(4)
// of the entries from the start of the value | entries, each
// idLen(1) | id | prevLen(1) | prev, in ascending id order. prev is the
// record's previous value or undoAbsent. The offsets let a lookup binary
// search the value where it lies in the mapped file.
type undoBatch []byte

// appendUndoBatchHeader starts a batch undo value of n entries in buf and
// returns it; fill the offsets with setUndoBatchOffset while appending.
func appendUndoBatchHeader(buf []byte, n int) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return append(buf, make([]byte, 4*n)...)
}

// appendUndoBatchEntry appends entry i (ids ascending) to a value started by
// appendUndoBatchHeader.
func appendUndoBatchEntry(buf []byte, i int, id, prev []byte) []byte {
	binary.BigEndian.PutUint32(buf[4+4*i:], uint32(len(buf)))
	buf = append(buf, byte(len(id)))
	buf = append(buf, id...)
	buf = append(buf, byte(len(prev)))
	return append(buf, prev...)
}

// count returns the number of entries, or -1 if the header is malformed.
func (b undoBatch) count() int {
	if len(b) < 4 {
		return -1
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > (len(b)-4)/4 {
		return -1
	}
	return n
}

// entry returns entry i of a value with count() > i; ok is false when it
// is malformed.
func (b undoBatch) entry(i int) (id, prev []byte, ok bool) {
	off := int(binary.BigEndian.Uint32(b[4+4*i:]))
	if off >= len(b) {
		return nil, nil, false
	}
	n := int(b[off])
	off++
	if n == 0 || off+n >= len(b) {
		return nil, nil, false
	}
	id = b[off : off+n]
	off += n
	m := int(b[off])
	off++
	if off+m > len(b) || (m != len(undoAbsent) && m != recordValueLen) {
		return nil, nil, false
	}
	return id, b[off : off+m], true
}

// each calls fn for every entry in order; it returns false if the value is
// malformed (fn may have been called for the entries before the fault).
func (b undoBatch) each(fn func(id, prev []byte)) bool {
	n := b.count()
	if n < 0 {
		return false
	}
	for i := range n {
		id, prev, ok := b.entry(i)
		if !ok {
			return false
		}
		fn(id, prev)
	}
	return true
}

// has reports whether the batch holds id; ok is false if the value is
// malformed where the search looked.
func (b undoBatch) has(id []byte) (found, ok bool) {
	n := b.count()
	if n < 0 {
		return false, false
	}
	ok = true
	i := sort.Search(n, func(i int) bool {
		eid, _, eok := b.entry(i)
		if !eok {
			ok = false
			return true
		}
		return bytes.Compare(eid, id) >= 0
	})
	if !ok || i == n {
		return false, ok
	}
	eid, _, _ := b.entry(i)
	return bytes.Equal(eid, id), true
}

// idSpan is the range of record_ids of one batch or more, inclusive.
type idSpan struct{ lo, hi string }

// streamSpans is what an ingest stream remembers of the ids it wrote: the
// union of its batches' ranges, and the range of each batch entry. Both
// grow with the number of batches, not records.
type streamSpans struct {
	covered []idSpan     // ascending, disjoint
	batches []batchEntry // ascending by lo, disjoint
}

// batchEntry is a batch undo entry: its key and the range of its ids.
type batchEntry struct {
	idSpan
	key []byte
}

// overlaps reports whether [lo, hi] meets the range of an earlier batch.
func (s *streamSpans) overlaps(lo, hi string) bool {
	i := sort.Search(len(s.covered), func(i int) bool { return s.covered[i].hi >= lo })
	return i < len(s.covered) && s.covered[i].lo <= hi
}

// cover adds [lo, hi] to the covered ranges, merging those it meets.
func (s *streamSpans) cover(lo, hi string) {
	lo, hi = strings.Clone(lo), strings.Clone(hi)
	i := sort.Search(len(s.covered), func(i int) bool { return s.covered[i].hi >= lo })
	j := i
	for j < len(s.covered) && s.covered[j].lo <= hi {
		j++
	}
	if i < j {
		lo, hi = min(lo, s.covered[i].lo), max(hi, s.covered[j-1].hi)
	}
	s.covered = slices.Replace(s.covered, i, j, idSpan{lo, hi})
}

// addBatch records a batch entry; its range must not meet any earlier
// batch's (overlaps was false).
func (s *streamSpans) addBatch(lo, hi string, key []byte) {
	e := batchEntry{idSpan{strings.Clone(lo), strings.Clone(hi)}, key}
	i := sort.Search(len(s.batches), func(i int) bool { return s.batches[i].lo > lo })
	s.batches = slices.Insert(s.batches, i, e)
	s.cover(lo, hi)
}

// batchFor returns the index of the batch entry whose range holds id,
// searching from from (ids are looked up in ascending order), or -1; next
// is where the following, larger id's search may start.
func (s *streamSpans) batchFor(id string, from int) (i, next int) {
	for from < len(s.batches) && s.batches[from].hi < id {
		from++
	}
	if from < len(s.batches) && s.batches[from].lo <= id {
		return from, from
	}
	return -1, from
}
