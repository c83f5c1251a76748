package node

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// ingestBatch is how many records one ingest transaction writes. Larger
// batches mean fewer fsyncs; the batch's ids and values are the only
// per-record memory an ingest holds.
const ingestBatch = 8192

// Summary is what a committed ingest stream did.
type Summary struct {
	Received    uint64 // records in the stream
	Added       uint64 // record_ids that were new
	Changed     uint64 // known record_ids whose content changed
	Unchanged   uint64 // records already stored exactly so
	DataVersion uint64 // the data version after the stream
	// ReleaseTook is how long computing the release after the stream took.
	ReleaseTook time.Duration
}

// Proto returns the summary as IngestRecords answers it.
func (s Summary) Proto() *fedreportv1.IngestRecordsResponse {
	return &fedreportv1.IngestRecordsResponse{
		Received:           s.Received,
		Added:              s.Added,
		Changed:            s.Changed,
		Unchanged:          s.Unchanged,
		DataVersion:        s.DataVersion,
		ReleaseComputation: durationpb.New(s.ReleaseTook),
	}
}

// Ingest is an open ingest stream: every record added is applied at Commit,
// or none is (Abort, an error, or a crash). Records go to the records bucket
// in sorted batches, each with one undo entry that holds the previous value
// (or "absent") of each of its record_ids, while the counter deltas
// accumulate in memory, bounded by the number of cells rather than records.
// As long as each batch's ids lie outside the ranges of the batches before
// it (a stream in key order), no id can have been sent twice and batches
// are written as they come. From the first batch that overlaps, the stream
// is sorted externally instead: sorted runs go to a spill file (ingest_spill.go),
// and Commit merges them and writes them in key order, looking up the ids
// that the batches written before may hold. Commit then applies the deltas
// and clears the stream marker in one small transaction, the stream's
// commit point; until then queries, which read only counters, see the
// state before the stream. The undo entries, garbage from then on, are
// purged afterwards (ingest_rollback.go). An Ingest is not safe for concurrent use.
type Ingest struct {
	s     *Store
	today uint32

	done    bool
	err     error // sticky: the first error; only Abort is left to do
	started bool  // the stream marker and undo bucket exist

	deltas  cellDeltas
	pending []pendingRecord
	arena   []byte   // the pending batch's keys and previous values
	keys    [][]byte // the pending batch's keys, in arena
	olds    [][]byte // their previous values, in arena
	sum     Summary

	source      string // source of the latest batch
	sourceIndex uint64 // records of that source so far

	spans    streamSpans // the id ranges written before spill (ingest_undo.go)
	batchSeq uint64      // batch undo entries written so far
	undoBuf  []byte      // the undo entry of the batch being written
	spill    *spillFile  // the sorted runs, once the stream left key order
}

// pendingRecord is a validated record waiting for its batch's transaction.
type pendingRecord struct {
	id          string
	val         recordValue
	index       uint64 // in the stream, from 1
	source      string
	sourceIndex uint64
}

// BeginIngest opens an ingest stream, waiting (as long as ctx allows) for
// any other stream or retraction to finish. The caller must Commit or Abort.
func (s *Store) BeginIngest(ctx context.Context) (*Ingest, error) {
	if err := s.acquireWriter(ctx); err != nil {
		return nil, err
	}
	return &Ingest{
		s:       s,
		today:   records.DayOf(s.now().UTC()),
		pending: make([]pendingRecord, 0, ingestBatch),
	}, nil
}

// Add validates and adds a batch of records; source names where they come
// from (a file name) for errors. An invalid record is a *RecordError, a
// record_id sent twice in the stream a *DuplicateRecordError. After an error
// the stream can only be aborted.
func (in *Ingest) Add(source string, batch []*fedreportv1.Record) error {
	if in.done {
		return ErrIngestFinished
	}
	if in.err != nil {
		return in.err
	}
	for _, r := range batch {
		in.sum.Received++
		if source != in.source {
			in.source, in.sourceIndex = source, 0
		}
		in.sourceIndex++
		day, err := records.ValidateDay(r, in.today)
		if err != nil {
			in.err = &RecordError{Index: in.sum.Received, Source: source, SourceIndex: in.sourceIndex, Err: err}
			return in.err
		}
		in.pending = append(in.pending, pendingRecord{
			id:          r.GetRecordId(),
			val:         encodeRecord(r, day),
			index:       in.sum.Received,
			source:      source,
			sourceIndex: in.sourceIndex,
		})
		if len(in.pending) >= ingestBatch && (in.spill == nil || len(in.pending) >= spillRun) {
			if err := in.flush(); err != nil {
				in.err = err
				return err
			}
		}
	}
	return nil
}

// flush writes the pending batch in one transaction, or, once the stream
// is out of key order, to the spill file as a sorted run.
func (in *Ingest) flush() error {
	if len(in.pending) == 0 {
		return nil
	}
	p := in.pending
	// Sorted puts keep bbolt's cursor on the same pages; exported files
	// usually arrive sorted already.
	byID := func(a, b pendingRecord) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.index, b.index))
	}
	if !slices.IsSortedFunc(p, byID) {
		slices.SortFunc(p, byID)
	}
	// A duplicate inside the batch: report the later occurrence.
	var dup *pendingRecord
	for i := 1; i < len(p); i++ {
		if p[i].id == p[i-1].id && (dup == nil || p[i].index < dup.index) {
			dup = &p[i]
		}
	}
	if dup != nil {
		return &DuplicateRecordError{ID: dup.id, Index: dup.index, Source: dup.source, SourceIndex: dup.sourceIndex}
	}
	// A batch whose ids lie outside every earlier batch's range cannot
	// repeat one of them, and bbolt writes it into pages of its own. The
	// first that does not is where the stream leaves key order: from then
	// on the batches go to the spill file, and Commit merges them.
	if in.spill == nil && in.spans.overlaps(p[0].id, p[len(p)-1].id) {
		sp, err := newSpillFile(in.s.path)
		if err != nil {
			return err
		}
		in.spill = sp
	}
	if in.spill != nil {
		if err := in.spill.writeRun(p); err != nil {
			return err
		}
		in.clearPending()
		return nil
	}
	if err := in.write(p, false); err != nil {
		return err
	}
	in.clearPending()
	return nil
}

func (in *Ingest) clearPending() {
	clear(in.pending) // drop the references to the callers' records
	in.pending = in.pending[:0]
}

// write stores the sorted batch p, free of duplicates, in one transaction
// with one batch undo entry (ingest_undo.go). A batch of the stream's merged spill
// file (merged) may repeat an id of the batches written before the stream
// left key order: those are looked up. Every other batch lies outside the
// ranges written before.
func (in *Ingest) write(p []pendingRecord, merged bool) error {
	// One allocation for every key and previous value of the batch; bbolt
	// keeps references to both until commit.
	size := 0
	for i := range p {
		size += len(p[i].id) + recordValueLen
	}
	if cap(in.arena) < size {
		in.arena = make([]byte, 0, size)
	}
	arena := in.arena[:0]
	for i := range p {
		arena = append(arena, p[i].id...)
	}
	if cap(in.keys) < len(p) {
		in.keys = make([][]byte, len(p))
		in.olds = make([][]byte, len(p))
	}
	keys, olds := in.keys[:len(p)], in.olds[:len(p)]
	off := 0
	for i := range p {
		keys[i] = arena[off : off+len(p[i].id) : off+len(p[i].id)]
		off += len(p[i].id)
	}
	lo, hi := p[0].id, p[len(p)-1].id
	check := merged && in.spans.overlaps(lo, hi)
	batchKey := undoBatchKey(in.batchSeq + 1)

	var added, changed, unchanged uint64
	err := in.s.update(func(tx *bolt.Tx) error {
		added, changed, unchanged = 0, 0, 0
		arena := arena[:off]
		if !in.started {
			meta := tx.Bucket(bucketMeta)
			if err := meta.Put(keyStream, []byte(strconv.FormatInt(in.s.now().UnixNano(), 10))); err != nil {
				return err
			}
		}
		undo, err := tx.CreateBucketIfNotExists(bucketUndo)
		if err != nil {
			return err
		}
		recs := tx.Bucket(bucketRecords)
		recs.FillPercent = 0.9
		if check {
			if err := in.checkSent(undo, p, keys); err != nil {
				return err
			}
		}
		// Reads first, as a merge of the sorted batch with a cursor (a
		// cursor is not valid across puts); then the puts.
		lookupSorted(recs.Cursor(), keys, func(i int, v []byte) {
			olds[i] = nil
			if v != nil {
				start := len(arena)
				arena = append(arena, v...)
				olds[i] = arena[start:len(arena):len(arena)]
			}
		})
		undoBuf := appendUndoBatchHeader(in.undoBuf[:0], len(p))
		for i := range p {
			r, key, old := &p[i], keys[i], olds[i]
			// The undo entry matters even for an unchanged record: it
			// marks the id as sent.
			if old == nil {
				undoBuf = appendUndoBatchEntry(undoBuf, i, key, undoAbsent)
			} else {
				undoBuf = appendUndoBatchEntry(undoBuf, i, key, old)
			}
			switch {
			case old == nil:
				if err := recs.Put(key, r.val[:]); err != nil {
					return err
				}
				k, q, _ := decodeRecordValue(r.val[:])
				in.deltas.add(k, int64(q))
				added++
			case bytes.Equal(old, r.val[:]):
				unchanged++
			default:
				ok, oq, valid := decodeRecordValue(old)
				if !valid {
					return &CorruptError{Problem: fmt.Sprintf("record %q has a malformed value", r.id)}
				}
				if err := recs.Put(key, r.val[:]); err != nil {
					return err
				}
				k, q, _ := decodeRecordValue(r.val[:])
				in.deltas.add(ok, -int64(oq))
				in.deltas.add(k, int64(q))
				changed++
			}
		}
		// bbolt keeps the value until the commit; undoBuf is not touched
		// again before the next batch.
		in.undoBuf = undoBuf
		return undo.Put(batchKey, undoBuf)
	})
	if err != nil {
		// The deltas may hold part of this batch; the stream is dead
		// anyway (the caller must Abort), and Abort ignores them.
		return err
	}
	in.started = true
	in.batchSeq++
	if !merged {
		in.spans.addBatch(lo, hi, batchKey)
	}
	in.sum.Added += added
	in.sum.Changed += changed
	in.sum.Unchanged += unchanged
	in.arena = arena[:0]
	clear(olds)
	return nil
}

// checkSent returns a *DuplicateRecordError for the record of the sorted
// batch, earliest in the stream, whose id a batch undo entry of the stream
// holds (a batch written before the stream left key order).
func (in *Ingest) checkSent(undo *bolt.Bucket, p []pendingRecord, keys [][]byte) error {
	var (
		dup  *pendingRecord
		cur  = -1
		val  undoBatch
		from int
	)
	for i := range p {
		var b int
		b, from = in.spans.batchFor(p[i].id, from)
		if b < 0 {
			continue
		}
		if b != cur {
			cur, val = b, undoBatch(undo.Get(in.spans.batches[b].key))
			if val == nil {
				return &CorruptError{Problem: fmt.Sprintf("the undo entry %x of the open stream is missing", in.spans.batches[b].key)}
			}
		}
		found, ok := val.has(keys[i])
		if !ok {
			return &CorruptError{Problem: fmt.Sprintf("the undo entry %x of the open stream is malformed", in.spans.batches[b].key)}
		}
		if found && (dup == nil || p[i].index < dup.index) {
			dup = &p[i]
		}
	}
	if dup != nil {
		return &DuplicateRecordError{ID: dup.id, Index: dup.index, Source: dup.source, SourceIndex: dup.sourceIndex}
	}
	return nil
}

// lookupSorted calls fn(i, value) for each of the ascending keys, with nil
// for a key the cursor's bucket does not hold. It walks the cursor forward
// while the next key is near and seeks when it is not, so a batch that is
// dense in the bucket (a re-sent file) or beyond its end (a new one) costs
// about one step per key instead of a search from the root.
func lookupSorted(c *bolt.Cursor, keys [][]byte, fn func(i int, v []byte)) {
	if len(keys) == 0 {
		return
	}
	k, v := c.Seek(keys[0])
	for i, key := range keys {
		for steps := 0; k != nil && bytes.Compare(k, key) < 0; steps++ {
			if steps == 8 {
				k, v = c.Seek(key)
				break
			}
			k, v = c.Next()
		}
		if k != nil && bytes.Equal(k, key) {
			fn(i, v)
		} else {
			fn(i, nil)
		}
	}
}

// Commit applies the stream: it writes the last batch (and, for a stream
// out of key order, the merged spill file), then in one
// transaction applies the counter deltas, clears the stream marker, counts
// the new records and increments the data version if anything changed. On
// error the stream is rolled back. Before it returns, the stream's undo
// entries are purged; a failure there is only logged (the stream is
// committed), and the next write or start finishes the purge.
func (in *Ingest) Commit() (Summary, error) {
	if in.done {
		return Summary{}, ErrIngestFinished
	}
	if in.err != nil {
		err := in.err
		in.Abort()
		return Summary{}, err
	}
	if err := in.flush(); err != nil {
		in.Abort()
		return Summary{}, err
	}
	if in.spill != nil {
		err := in.spill.merge(in.pending, ingestBatch, func(p []pendingRecord) error { return in.write(p, true) })
		in.spill.close()
		in.spill = nil
		if err != nil {
			in.Abort()
			return Summary{}, err
		}
	}
	var version uint64
	err := in.s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		version = getUint64(meta.Get(keyDataVersion))
		if !in.started {
			return nil
		}
		if err := applySortedDeltas(tx, in.deltas.sorted()); err != nil {
			return err
		}
		// The commit point: without the marker the undo entries are
		// garbage, and a crash from here on rolls forward, not back.
		if err := meta.Delete(keyStream); err != nil {
			return err
		}
		if in.sum.Added+in.sum.Changed == 0 {
			return nil
		}
		if err := addRecordCount(tx, int64(in.sum.Added)); err != nil {
			return err
		}
		var err error
		version, err = bumpDataVersion(tx, in.s.now())
		return err
	})
	if err != nil {
		in.Abort()
		return Summary{}, err
	}
	in.done = true
	if in.sum.Added+in.sum.Changed > 0 {
		start := time.Now()
		if err := in.s.refreshRelease(); err != nil {
			// The stream is committed; answers come from the previous
			// release until the next write or start computes this one.
			in.s.log.Error("compute the release after an ingest; answers stay on the previous release", "data", in.s.path, "err", err)
		}
		in.sum.ReleaseTook = time.Since(start)
	}
	if err := in.s.settleStream("commit"); err != nil {
		in.s.log.Warn("purge the undo entries of a committed ingest stream; the next write retries", "data", in.s.path, "err", err)
	}
	in.s.releaseWriter()
	in.sum.DataVersion = version
	return in.sum, nil
}

// Abort rolls the stream back: every record it replaced is restored, every
// record it added removed, and the counters never moved. It is a no-op after
// Commit or an earlier Abort. If the rollback fails (the disk, say), the next
// stream or the next open finishes it.
func (in *Ingest) Abort() {
	if in.done {
		return
	}
	in.done = true
	defer in.s.releaseWriter()
	if in.spill != nil {
		in.spill.close()
		in.spill = nil
	}
	if !in.started {
		return
	}
	if err := in.s.settleStream("abort"); err != nil {
		in.s.log.Error("roll back an aborted ingest stream; it will be retried", "data", in.s.path, "err", err)
	}
}

// Received returns how many records the stream has carried so far.
func (in *Ingest) Received() uint64 { return in.sum.Received }
