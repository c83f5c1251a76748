package boltcheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// pages walks every page of a bbolt file from its meta page m, reading
// the file (r) rather than mapping it, and returns the first structural
// problem: a page id out of the file, a page that does not say it is the
// page it was reached as, an element reaching past its page, keys out of
// order, a page reached twice, a freed page in use, or a page neither in use
// nor free. It checks what bbolt's tx.Check checks, and also every length
// bbolt reads through a pointer. bbolt's check cannot be used on a damaged
// file: it follows a damaged page id out of its mapping in a goroutine of
// its own, and the fault kills the process, where this only returns an
// error. A file this accepts is one bbolt reads only within its pages.
func pages(r io.ReaderAt, m Meta) error {
	w := &pageWalker{r: r, ps: uint64(m.PageSize), hwm: m.HWM}
	if w.ps < minPageSize || w.hwm < 3 {
		return fmt.Errorf("meta page: page size %d, %d pages: not a bbolt file", m.PageSize, m.HWM)
	}
	w.inUse = make([]uint64, (w.hwm+63)/64)
	w.free = make([]uint64, len(w.inUse))
	w.mark(w.inUse, 0)
	w.mark(w.inUse, 1)
	synced := m.Freelist != NoFreelist
	if synced {
		if err := w.freelist(m.Freelist); err != nil {
			return err
		}
	}
	if _, err := w.tree(m.Root, "the root bucket", nil, nil, 0); err != nil {
		return err
	}
	if !synced {
		// bbolt takes every page not in use as free (a crash left no
		// freelist, or commits skip writing it).
		return nil
	}
	for id := uint64(2); id < w.hwm; id++ {
		if !w.has(w.inUse, id) && !w.has(w.free, id) {
			return fmt.Errorf("page %d is neither in use nor free", id)
		}
	}
	return nil
}

// The page layout bbolt writes (go.etcd.io/bbolt internal/common).
const (
	pageHeaderLen  = 16 // id(8) flags(2) count(2) overflow(4)
	pageElementLen = 16 // branch: pos(4) ksize(4) pgid(8); leaf: flags(4) pos(4) ksize(4) vsize(4)
	bucketHeader   = 16 // root pgid(8) sequence(8); an inline bucket's page follows
	branchPage     = 0x01
	leafPage       = 0x02
	freelistPage   = 0x10
	bucketElement  = 0x01 // a leaf element that is a bucket
	minPageSize    = 512
	// maxTreeDepth bounds the walk: buckets nest once in a node's file,
	// and a B+tree of 2^64 keys is under 64 levels deep.
	maxTreeDepth = 128
)

type pageWalker struct {
	r       io.ReaderAt
	ps, hwm uint64
	// inUse and free are bitsets of page ids.
	inUse, free []uint64
	// bufs[d] holds the page read at depth d, so that a parent's keys stay
	// valid while its children are read.
	bufs [][]byte
}

func (w *pageWalker) mark(set []uint64, id uint64) { set[id/64] |= 1 << (id % 64) }
func (w *pageWalker) has(set []uint64, id uint64) bool {
	return set[id/64]&(1<<(id%64)) != 0
}

// read returns page id and its overflow pages as reached from what, after
// checking that they are inside the file and in use nowhere else, and marks
// them in use.
func (w *pageWalker) read(id uint64, what string, depth int, want uint16) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("%s is page %d, outside the file's pages 2-%d", what, id, w.hwm-1)
	}
	for len(w.bufs) <= depth {
		w.bufs = append(w.bufs, make([]byte, w.ps))
	}
	buf := w.bufs[depth][:w.ps]
	if _, err := w.r.ReadAt(buf, int64(id*w.ps)); err != nil {
		return nil, fmt.Errorf("%s, page %d: %w", what, id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(buf); got != id {
		return nil, fmt.Errorf("%s, page %d: the page says it is page %d", what, id, got)
	}
	if flags := le.Uint16(buf[8:]); flags != want && !(want == branchPage|leafPage && (flags == branchPage || flags == leafPage)) {
		return nil, fmt.Errorf("%s, page %d: page type %#x, want %s", what, id, flags, pageKind(want))
	}
	overflow := uint64(le.Uint32(buf[12:]))
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("%s, page %d: its %d overflow pages reach past the file's pages", what, id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if w.has(w.inUse, i) {
			return nil, fmt.Errorf("%s, page %d: page %d is in use twice", what, id, i)
		}
		if w.has(w.free, i) {
			return nil, fmt.Errorf("%s, page %d: page %d is in use and free", what, id, i)
		}
		w.mark(w.inUse, i)
	}
	if overflow > 0 {
		n := (overflow + 1) * w.ps
		if uint64(cap(w.bufs[depth])) < n {
			w.bufs[depth] = make([]byte, n)
		}
		buf = w.bufs[depth][:n]
		if _, err := w.r.ReadAt(buf, int64(id*w.ps)); err != nil {
			return nil, fmt.Errorf("%s, page %d: %w", what, id, err)
		}
	}
	return buf, nil
}

func pageKind(flags uint16) string {
	switch flags {
	case freelistPage:
		return "a freelist page"
	default:
		return "a branch or leaf page"
	}
}

// freelist marks the ids of the freelist page id free.
func (w *pageWalker) freelist(id uint64) error {
	buf, err := w.read(id, "the freelist", 0, freelistPage)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	at, n := uint64(pageHeaderLen), uint64(le.Uint16(buf[10:]))
	if n == 0xFFFF { // the count overflows; the first id slot holds it
		n, at = le.Uint64(buf[at:]), at+8
	}
	if n > (uint64(len(buf))-at)/8 {
		return fmt.Errorf("the freelist, page %d: %d ids do not fit in its %d bytes", id, n, len(buf))
	}
	for i := range n {
		f := le.Uint64(buf[at+8*i:])
		switch {
		case f < 2 || f >= w.hwm:
			return fmt.Errorf("the freelist, page %d: free page %d is outside the file's pages", id, f)
		case w.has(w.free, f):
			return fmt.Errorf("the freelist, page %d: page %d is freed twice", id, f)
		case w.has(w.inUse, f):
			return fmt.Errorf("the freelist, page %d: page %d is in use and free", id, f)
		}
		w.mark(w.free, f)
	}
	return nil
}

// tree walks the B+tree rooted at page id, whose keys must be at least lo
// and below hi (nil: unbounded), and returns its last key (a copy).
func (w *pageWalker) tree(id uint64, what string, lo, hi []byte, depth int) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("%s, page %d: the tree is deeper than %d levels", what, id, maxTreeDepth)
	}
	buf, err := w.read(id, what, depth, branchPage|leafPage)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("page %d", id)
	if binary.LittleEndian.Uint16(buf[8:]) == leafPage {
		return w.leaf(buf, where, lo, hi, depth)
	}
	elems, err := elements(buf, where)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, fmt.Errorf("%s: a branch page without elements", where)
	}
	prev := lo
	for i, e := range elems {
		key := e.key
		if err := keyInOrder(where, i, key, prev, hi); err != nil {
			return nil, err
		}
		next := hi
		if i+1 < len(elems) {
			next = elems[i+1].key
		}
		last, err := w.tree(e.child, fmt.Sprintf("a child of page %d", id), key, next, depth+1)
		if err != nil {
			return nil, err
		}
		if last != nil {
			prev = last
		}
	}
	return bytes.Clone(prev), nil
}

// leaf checks a leaf page (or an inline bucket's page: where names it) and
// walks the buckets it holds.
func (w *pageWalker) leaf(buf []byte, where string, lo, hi []byte, depth int) ([]byte, error) {
	elems, err := elements(buf, where)
	if err != nil {
		return nil, err
	}
	prev := lo
	for i, e := range elems {
		if err := keyInOrder(where, i, e.key, prev, hi); err != nil {
			return nil, err
		}
		prev = e.key
		if !e.bucket {
			continue
		}
		if len(e.value) < bucketHeader {
			return nil, fmt.Errorf("%s, element %d: a bucket header of %d bytes", where, i, len(e.value))
		}
		name := fmt.Sprintf("bucket %q", e.key)
		if root := binary.LittleEndian.Uint64(e.value); root != 0 {
			if _, err := w.tree(root, name, nil, nil, depth+1); err != nil {
				return nil, err
			}
			continue
		}
		if err := w.inline(e.value[bucketHeader:], name); err != nil {
			return nil, err
		}
	}
	return bytes.Clone(prev), nil
}

// inline checks the page of an inline bucket: a leaf page inside a value,
// whose elements cannot be buckets.
func (w *pageWalker) inline(p []byte, name string) error {
	where := name + " (inline)"
	if len(p) < pageHeaderLen {
		return fmt.Errorf("%s: a page of %d bytes", where, len(p))
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != leafPage {
		return fmt.Errorf("%s: page type %#x, want a leaf page", where, flags)
	}
	elems, err := elements(p, where)
	if err != nil {
		return err
	}
	var prev []byte
	for i, e := range elems {
		if err := keyInOrder(where, i, e.key, prev, nil); err != nil {
			return err
		}
		if e.bucket {
			return fmt.Errorf("%s, element %d: an inline bucket cannot hold a bucket", where, i)
		}
		prev = e.key
	}
	return nil
}

type element struct {
	key, value []byte
	child      uint64 // branch pages
	bucket     bool   // leaf pages
}

// elements decodes the elements of page p (header included), checking that
// each one's key and value lie inside p as bbolt would read them: from the
// element's own offset.
func elements(p []byte, where string) ([]element, error) {
	le := binary.LittleEndian
	n := uint64(le.Uint16(p[10:]))
	if n > (uint64(len(p))-pageHeaderLen)/pageElementLen {
		return nil, fmt.Errorf("%s: %d elements do not fit in its %d bytes", where, n, len(p))
	}
	branch := le.Uint16(p[8:]) == branchPage
	out := make([]element, n)
	for i := range n {
		at := pageHeaderLen + i*pageElementLen
		e := p[at : at+pageElementLen]
		var pos, ksize, vsize uint64
		if branch {
			pos, ksize = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:]))
			out[i].child = le.Uint64(e[8:])
		} else {
			out[i].bucket = le.Uint32(e)&bucketElement != 0
			pos, ksize, vsize = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		start := at + pos
		if end := start + ksize + vsize; end > uint64(len(p)) {
			return nil, fmt.Errorf("%s, element %d: its key and value reach byte %d of a %d-byte page", where, i, end, len(p))
		}
		out[i].key = p[start : start+ksize]
		out[i].value = p[start+ksize : start+ksize+vsize]
	}
	return out, nil
}

// keyInOrder checks element i's key against the previous key (or, for the
// first, the lower bound from the parent) and the upper bound hi.
func keyInOrder(where string, i int, key, prev, hi []byte) error {
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, key) > 0:
		return fmt.Errorf("%s: its first key %x is below its parent's %x", where, key, prev)
	case i > 0 && bytes.Compare(prev, key) >= 0:
		return fmt.Errorf("%s, element %d: key %x does not follow %x", where, i, key, prev)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("%s, element %d: key %x is not below its parent's next key %x", where, i, key, hi)
	}
	return nil
}
