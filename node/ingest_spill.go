package node

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// spillRun is how many records a stream out of key order sorts in memory
// before it writes them to its spill file as one sorted run: about 6 MB of
// pending records, and 153 runs to merge for 10M records.
const spillRun = 1 << 16

// spillFile holds the sorted runs of a stream that arrived out of key order
// (Ingest.flush). bbolt rewrites every page a transaction touches, so
// batches of random ids would rewrite most of the file each time; the runs
// are merged at Commit and written in key order instead, as a stream in
// order is. The file is unlinked as soon as it is created: a crash leaves
// nothing behind, and the records in it are not stored until the merge.
type spillFile struct {
	f       *os.File
	name    string // still to remove at close when the unlink failed (not Linux)
	w       *bufio.Writer
	size    int64
	runs    [][2]int64 // offset and length of each run
	sources []string
	source  map[string]uint64 // index in sources
	buf     []byte
}

func newSpillFile(dataPath string) (*spillFile, error) {
	f, err := os.CreateTemp(filepath.Dir(dataPath), "."+filepath.Base(dataPath)+".ingest-*")
	if err != nil {
		return nil, fmt.Errorf("create the spill file of an ingest stream: %w", err)
	}
	sp := &spillFile{f: f, w: bufio.NewWriterSize(f, 1<<16), source: map[string]uint64{}}
	if err := os.Remove(f.Name()); err != nil {
		sp.name = f.Name()
	}
	return sp, nil
}

// writeRun appends the sorted records p as one run.
func (sp *spillFile) writeRun(p []pendingRecord) error {
	start := sp.size
	for i := range p {
		r := &p[i]
		src, ok := sp.source[r.source]
		if !ok {
			src = uint64(len(sp.sources))
			sp.sources = append(sp.sources, r.source)
			sp.source[r.source] = src
		}
		b := append(sp.buf[:0], byte(len(r.id)))
		b = append(b, r.id...)
		b = append(b, r.val[:]...)
		b = binary.AppendUvarint(b, r.index)
		b = binary.AppendUvarint(b, src)
		b = binary.AppendUvarint(b, r.sourceIndex)
		sp.buf = b
		if _, err := sp.w.Write(b); err != nil {
			return fmt.Errorf("write the spill file of an ingest stream: %w", err)
		}
		sp.size += int64(len(b))
	}
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("write the spill file of an ingest stream: %w", err)
	}
	sp.runs = append(sp.runs, [2]int64{start, sp.size - start})
	return nil
}

func (sp *spillFile) close() {
	_ = sp.f.Close()
	if sp.name != "" {
		_ = os.Remove(sp.name)
	}
}

// merge calls chunk with the records of every run in ascending id order,
// up to max at a time; two records with the same id are a
// *DuplicateRecordError naming the later one. The slice passed to chunk is
// reused after it returns.
func (sp *spillFile) merge(buf []pendingRecord, max int, chunk func([]pendingRecord) error) error {
	h := make(runHeap, 0, len(sp.runs))
	for _, run := range sp.runs {
		rr := &runReader{sp: sp, r: bufio.NewReaderSize(io.NewSectionReader(sp.f, run[0], run[1]), 1<<15)}
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, rr)
		}
	}
	heap.Init(&h)
	out := buf[:0]
	prev := "" // ids are never empty
	for len(h) > 0 {
		rr := h[0]
		if rr.cur.id == prev {
			r := rr.cur
			return &DuplicateRecordError{ID: r.id, Index: r.index, Source: r.source, SourceIndex: r.sourceIndex}
		}
		prev = rr.cur.id
		out = append(out, rr.cur)
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
		if len(out) == max {
			if err := chunk(out); err != nil {
				return err
			}
			clear(out)
			out = out[:0]
		}
	}
	if len(out) > 0 {
		return chunk(out)
	}
	return nil
}

// runReader reads one run of a spill file.
type runReader struct {
	sp  *spillFile
	r   *bufio.Reader
	cur pendingRecord
	buf [256 + recordValueLen]byte
}

var errSpillCorrupt = errors.New("the spill file of an ingest stream is malformed")

// next reads the next record into cur; false at the end of the run.
func (rr *runReader) next() (bool, error) {
	n, err := rr.r.ReadByte()
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the spill file of an ingest stream: %w", err)
	}
	b := rr.buf[:int(n)+recordValueLen]
	if _, err := io.ReadFull(rr.r, b); err != nil {
		return false, fmt.Errorf("read the spill file of an ingest stream: %w", err)
	}
	rr.cur = pendingRecord{id: string(b[:n])}
	copy(rr.cur.val[:], b[n:])
	var src uint64
	for _, v := range []*uint64{&rr.cur.index, &src, &rr.cur.sourceIndex} {
		if *v, err = binary.ReadUvarint(rr.r); err != nil {
			return false, errSpillCorrupt
		}
	}
	if src >= uint64(len(rr.sp.sources)) {
		return false, errSpillCorrupt
	}
	rr.cur.source = rr.sp.sources[src]
	return true, nil
}

// runHeap orders run readers by their current record: id, then place in
// the stream.
type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	a, b := &h[i].cur, &h[j].cur
	return a.id < b.id || a.id == b.id && a.index < b.index
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
