package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/isa-alliance/fedreport/internal/boltmap"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Store is one member's data file: records, counters kept equal to the
// records in every committed state, and the disclosure log. It is safe for
// concurrent use; ingest streams and retractions run one at a time.
type Store struct {
	db     *bolt.DB
	path   string
	member string
	policy Policy
	log    *slog.Logger
	now    func() time.Time
	// maxAnswerBytes bounds an Aggregate answer's encoded cells.
	maxAnswerBytes int
	metrics        *Metrics

	// rollbackChunk, when set (by tests), makes every rollback go in
	// transactions of that many records, as after a failed one.
	rollbackChunk int

	// writer holds a token while an ingest stream or a retraction runs; a
	// channel rather than a mutex so that waiting honours a context.
	writer chan struct{}
	// holder is who holds the writer token, set by acquireWriter.
	holder writerHolder
	// aggregating counts Aggregate calls in flight; with more than one,
	// group commit (bolt.DB.Batch) saves fsyncs, with one it only adds delay.
	aggregating atomic.Int32
	closed      atomic.Bool
	// cal is the policy's release calendar.
	cal *calendar
	// releaseMu serialises computing the release (release_store.go).
	releaseMu sync.Mutex
	// stopReleasing ends the releaser of the current writer; guarded by
	// the writer token.
	stopReleasing func()
	// done is closed by Close; background goroutines (bg) end on it.
	done chan struct{}
	bg   sync.WaitGroup
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Member is the member code the file belongs to (FR, IT, ...).
	Member string
	// Policy is the disclosure policy Aggregate applies.
	Policy Policy
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// MaxAnswerBytes bounds the encoded cells of one Aggregate answer
	// (tests); 0 means MaxAnswerBytes.
	MaxAnswerBytes int
	// Metrics, when set, times the disclosure log's appends.
	Metrics *Metrics
}

// openTimeout bounds the wait for the file lock, so that a second process
// gets ErrInUse instead of hanging.
const openTimeout = time.Second

// BoltOptions returns the options every open of a node's file uses (the
// bench's floor opens its files with them too). Commits skip writing the
// freelist (NoFreelistSync, as etcd does): with many free pages, as a large
// stream's undo entries leave behind, writing it at every commit costs
// megabytes per batch and, needing ever larger contiguous runs, makes the
// file grow pass after pass. Close writes it once (Store.Close), so a clean
// restart reads it back; after a crash bbolt rebuilds it on open by walking
// every page of the file. The hash-map freelist keeps allocation fast in big
// files.
func BoltOptions(readOnly bool) *bolt.Options {
	return &bolt.Options{
		Timeout:        openTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       readOnly,
	}
}

// OpenStore opens or creates the data file at path. It refuses a file of
// another member or of an unknown schema version, and rolls back an ingest
// stream a crash left unfinished.
func OpenStore(path string, opts StoreOptions) (*Store, error) {
	if !identity.ValidMember(opts.Member) {
		return nil, fmt.Errorf("open store %s: member code %q: want 2-8 upper-case letters or digits", path, opts.Member)
	}
	pol, cal, err := opts.Policy.normalize()
	if err != nil {
		return nil, err
	}
	s := &Store{
		path:    path,
		member:  opts.Member,
		policy:  pol,
		cal:     newCalendar(cal),
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		writer:  make(chan struct{}, 1),
		done:    make(chan struct{}),

		maxAnswerBytes: cmp.Or(opts.MaxAnswerBytes, MaxAnswerBytes),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	db, err := bolt.Open(path, 0o600, BoltOptions(false))
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.db = db
	// Aggregate batches only when calls overlap; a short delay lets the
	// overlapping ones share one commit without slowing a lone call much.
	db.MaxBatchDelay = 500 * time.Microsecond
	if err := db.Update(s.initMeta); err != nil {
		_ = db.Close()
		return nil, err
	}
	stop := s.releaseWhile()
	err = s.settleStream("open")
	if err == nil {
		err = s.countRecordsIfMissing()
	}
	stop()
	if err != nil {
		close(s.done)
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: settle an ingest stream: %w", path, err)
	}
	if err := s.refreshRelease(); err != nil {
		close(s.done)
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.releaseMapped()
	return s, nil
}

// initMeta creates the buckets of a new file, or checks an existing one.
func (s *Store) initMeta(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errors.New("not empty") }); err != nil {
			return &SchemaVersionError{Path: s.path}
		}
		for _, name := range [][]byte{bucketMeta, bucketRecords, bucketCounters, bucketDisclosures} {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta = tx.Bucket(bucketMeta)
		if err := meta.Put(keySchemaVersion, u32(SchemaVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyMember, []byte(s.member)); err != nil {
			return err
		}
		if err := meta.Put(keyRecords, u64(0)); err != nil {
			return err
		}
		return meta.Put(keyDataVersion, u64(0))
	}
	if isCoordinatorFile(tx) {
		return &CoordinatorFileError{Path: s.path}
	}
	switch v := meta.Get(keySchemaVersion); {
	case v == nil:
		return &SchemaVersionError{Path: s.path}
	case len(v) != 4:
		return &SchemaVersionError{Path: s.path, Found: ^uint32(0)}
	case binary.BigEndian.Uint32(v) != SchemaVersion:
		return &SchemaVersionError{Path: s.path, Found: binary.BigEndian.Uint32(v)}
	}
	if stored := string(meta.Get(keyMember)); stored != s.member {
		return &MemberMismatchError{Path: s.path, Stored: stored, Configured: s.member}
	}
	for _, name := range [][]byte{bucketRecords, bucketCounters, bucketDisclosures} {
		if tx.Bucket(name) == nil {
			return &CorruptError{Problem: fmt.Sprintf("bucket %s is missing", name)}
		}
	}
	return nil
}

// countRecordsIfMissing stores the number of records in meta for a file
// written before meta kept it (a walk of the records bucket, once).
func (s *Store) countRecordsIfMissing() error {
	var have bool
	if err := s.view(func(tx *bolt.Tx) error {
		have = tx.Bucket(bucketMeta).Get(keyRecords) != nil
		return nil
	}); err != nil || have {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyRecords) != nil {
			return nil
		}
		n := tx.Bucket(bucketRecords).Stats().KeyN
		return meta.Put(keyRecords, u64(uint64(n)))
	})
}

// addRecordCount moves the number of records in meta by delta.
func addRecordCount(tx *bolt.Tx, delta int64) error {
	meta := tx.Bucket(bucketMeta)
	cur := int64(getUint64(meta.Get(keyRecords)))
	if cur+delta < 0 {
		return &CorruptError{Problem: fmt.Sprintf("the record count would go from %d to %d", cur, cur+delta)}
	}
	return meta.Put(keyRecords, u64(uint64(cur+delta)))
}

// Close closes the data file. An ingest stream still open is rolled back on
// the next open.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.done)
	s.bg.Wait()
	// Commits skip the freelist (BoltOptions); writing it once here spares
	// the next start a walk of the whole file.
	serr := s.db.Update(func(tx *bolt.Tx) error {
		// Only commits read the field, and they hold the writer lock as this does.
		tx.DB().NoFreelistSync = false
		return nil
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	if serr != nil {
		return fmt.Errorf("close store %s: write the freelist: %w", s.path, serr)
	}
	return nil
}

// Member returns the member code the store belongs to.
func (s *Store) Member() string { return s.member }

// Policy returns the disclosure policy, defaults applied.
func (s *Store) Policy() Policy { return s.policy }

// Path returns the data file's path.
func (s *Store) Path() string { return s.path }

// DataVersion returns the number of committed writes so far.
func (s *Store) DataVersion() (uint64, error) {
	var v uint64
	err := s.view(func(tx *bolt.Tx) error {
		v = getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))
		return nil
	})
	return v, err
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// acquireWriter waits for the writer token. It also settles what an earlier
// stream left behind if its abort or purge failed (a disk error, say).
func (s *Store) acquireWriter(ctx context.Context) error {
	req := writeRequestOf(ctx)
	select {
	case s.writer <- struct{}{}:
	default:
		// Say who holds the lock, and since when, before waiting for it.
		h := s.holder.get()
		s.log.Info("write waits for the write lock", "caller", req.caller, "held_by", h.Caller, "since", h.Since.UTC().Format(time.RFC3339))
		if req.wait != nil {
			req.wait(h)
		}
		select {
		case s.writer <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.holder.set(Writer{Caller: req.caller, Since: s.now()})
	if s.closed.Load() {
		<-s.writer
		return ErrClosed
	}
	s.stopReleasing = s.releaseWhile()
	if err := s.settleStream("recover"); err != nil {
		s.releaseWriter()
		return err
	}
	return nil
}

func (s *Store) releaseWriter() {
	s.stopReleasing()
	s.stopReleasing = nil
	<-s.writer
}

// rollbackBatch is how many per-key undo entries one rollback transaction
// restores (a record put and an undo delete each); a batch undo entry is
// restored in a transaction of its own.
const rollbackBatch = 8192

// rollbackChunk is how many records of a batch undo entry one rollback
// transaction restores once a whole entry's transaction has failed: on a
// full disk a transaction that rewrites a few pages fits in the pages the
// earlier ones freed, where one that restores 8,192 records needs more.
const rollbackChunk = 128

// purgeBatchEntries is how many batch undo entries of a committed stream
// one purge transaction deletes (settleStream).
const purgeBatchEntries = 64

// settleStream finishes what a stream left in the undo bucket:
//
//   - a stream still open (the stream marker is set: a crash, a shutdown, an
//     abort) is rolled back, a batch per transaction so that memory stays
//     flat whatever the stream's size: every record it replaced is restored
//     and every record it added removed, from its undo entries. After a
//     failed transaction (a full disk) it goes on rollbackChunk records per
//     transaction. keyRollbackAt in meta keeps how far it got, and the undo
//     bucket is dropped at the end rather than entry by entry;
//   - a committed stream (no marker) leaves its undo entries behind as
//     garbage: its batch entries are deleted purgeBatchEntries per
//     transaction (each frees its overflow pages unread), then one
//     transaction deletes the bucket without a per-key delete. That reads
//     every page of per-key entries an earlier build wrote; the writer's
//     releaseWhile keeps those out of the resident set meanwhile.
//
// Counters are untouched either way: a stream changes them only in its
// commit. It is a no-op when there is neither an undo bucket nor a marker.
func (s *Store) settleStream(why string) error {
	var (
		settled  uint64
		seen     bool // an undo bucket or a marker was found
		rollback bool // what was found is an open stream
		start    = time.Now()
		// chunk bounds the records of a batch entry restored per
		// transaction: 0 (the whole entry) until a transaction fails.
		chunk = s.rollbackChunk
	)
	for {
		done := false
		err := s.update(func(tx *bolt.Tx) error {
			undo := tx.Bucket(bucketUndo)
			meta := tx.Bucket(bucketMeta)
			open := meta.Get(keyStream) != nil
			if undo == nil && !open {
				done = true
				return nil
			}
			seen, rollback = true, open
			if undo == nil {
				done = true
				if err := meta.Delete(keyRollbackAt); err != nil {
					return err
				}
				return meta.Delete(keyStream)
			}
			if !open {
				// Batch entries first, purgeBatchEntries per transaction
				// (released after each): deleting one reads the first page
				// of its overflow run, and the kernel maps the page's cached
				// neighbours with it. Then the bucket, whose remaining
				// per-key entries fill dense pages.
				var keys [][]byte
				c := undo.Cursor()
				for k, _ := c.First(); k != nil && isUndoBatchKey(k) && len(keys) < purgeBatchEntries; k, _ = c.Next() {
					keys = append(keys, bytes.Clone(k))
				}
				if len(keys) == 0 {
					done = true
					return tx.DeleteBucket(bucketUndo)
				}
				for i := len(keys) - 1; i >= 0; i-- {
					if err := undo.Delete(keys[i]); err != nil {
						return err
					}
				}
				return nil
			}
			recs := tx.Bucket(bucketRecords)
			restore := func(key, prev []byte) error {
				if bytes.Equal(prev, undoAbsent) {
					return recs.Delete(key)
				}
				return recs.Put(key, prev)
			}
			// Batch entries are restored in key order and not deleted
			// one by one: keyRollbackAt says how far the rollback got,
			// and the bucket goes in one piece at the end. Deleting an
			// entry rewrites the entries that share its node (up to four
			// of ~200 KB), which on a full disk there is no room for.
			c := undo.Cursor()
			k, v := c.First()
			at := meta.Get(keyRollbackAt)
			if len(at) == undoBatchKeyLen+4 {
				if k, v = c.Seek(at[:undoBatchKeyLen]); k != nil && isUndoBatchKey(k) {
					if n := undoBatch(v).count(); n >= 0 && rollbackFrom(at, k) >= n {
						k, v = c.Next() // that entry is done
					}
				}
			}
			if k == nil {
				done = true
				if err := tx.DeleteBucket(bucketUndo); err != nil {
					return err
				}
				if err := meta.Delete(keyRollbackAt); err != nil {
					return err
				}
				return meta.Delete(keyStream)
			}
			if isUndoBatchKey(k) {
				// A copy: bbolt keeps the keys and values put until the
				// commit, and the entry's pages are freed below.
				b := undoBatch(bytes.Clone(v))
				key := bytes.Clone(k)
				malformed := &CorruptError{Problem: fmt.Sprintf("the undo entry %x of an open ingest stream is malformed", k)}
				n := b.count()
				if n < 0 {
					return malformed
				}
				from := rollbackFrom(meta.Get(keyRollbackAt), key)
				to := n
				if chunk > 0 {
					to = min(n, from+chunk)
				}
				for i := from; i < to; i++ {
					id, prev, ok := b.entry(i)
					if !ok {
						return malformed
					}
					if err := restore(id, prev); err != nil {
						return err
					}
				}
				settled += uint64(max(to-from, 0))
				return meta.Put(keyRollbackAt, binary.BigEndian.AppendUint32(key, uint32(max(to, from))))
			}
			var keys [][]byte
			for ; k != nil && len(keys) < rollbackBatch; k, v = c.Next() {
				key := bytes.Clone(k)
				keys = append(keys, key)
				if err := restore(key, bytes.Clone(v)); err != nil {
					return err
				}
			}
			// Last key first: bbolt removes an element by shifting the
			// ones after it in its node, so deleting a node's keys from
			// the back keeps that linear instead of quadratic.
			for i := len(keys) - 1; i >= 0; i-- {
				if err := undo.Delete(keys[i]); err != nil {
					return err
				}
			}
			settled += uint64(len(keys))
			return nil
		})
		if err != nil {
			var corrupt *CorruptError
			if rollback && chunk == 0 && !errors.As(err, &corrupt) && !errors.Is(err, ErrClosed) {
				// A full disk, most likely: go on in transactions small
				// enough for the pages the earlier ones freed.
				s.log.Warn("rolling back an ingest stream in small transactions after a failed one", "data", s.path, "err", err)
				chunk = rollbackChunk
				continue
			}
			return err
		}
		if done {
			break
		}
		// The transactions come faster than the writer's periodic release,
		// and each reads pages all over the file.
		s.releaseMapped()
	}
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case !seen:
	case rollback && why == "open":
		s.log.Warn("rolled back an ingest stream left unfinished by a crash or shutdown", "data", s.path, "records_restored", settled, "took", took)
	case rollback:
		s.log.Info("rolled back an ingest stream", "data", s.path, "records_restored", settled, "took", took)
	case why == "open":
		s.log.Info("purged the undo entries of a committed ingest stream", "data", s.path, "took", took)
	default:
		s.log.Debug("purged the undo entries of a committed ingest stream", "data", s.path, "took", took)
	}
	return nil
}

// rollbackFrom is how many records of the batch undo entry key an earlier
// transaction of a rollback in small transactions restored: the count in
// at (keyRollbackAt's value) when at names key, else 0.
func rollbackFrom(at, key []byte) int {
	if len(at) != len(key)+4 || !bytes.Equal(at[:len(key)], key) {
		return 0
	}
	return int(binary.BigEndian.Uint32(at[len(key):]))
}

// releaseWhile releases the pages of the data file mapped so far
// (releaseMapped) every boltmap.ReleaseInterval until the returned stop is called.
// Writes run it: a stream reads pages in every batch, a purge or a rollback
// walks the undo entries, and only a release from another goroutine reaches
// the pages a running transaction has read.
func (s *Store) releaseWhile() (stop func()) {
	return boltmap.ReleasePeriodically(s.db, &s.bg, s.done)
}

// releaseMapped releases the pages of the data file mapped so far.
func (s *Store) releaseMapped() {
	if !s.closed.Load() {
		boltmap.Release(s.db)
	}
}

// RetractSummary is what a retraction did.
type RetractSummary struct {
	Retracted   uint64
	DataVersion uint64
}

// Retract removes the records with the given ids in one transaction and
// moves the counters back. If any id is not stored, nothing is removed and
// the error is an *UnknownRecordsError listing every unknown id. An id listed
// twice is retracted once.
func (s *Store) Retract(ctx context.Context, ids []string) (RetractSummary, error) {
	if len(ids) == 0 {
		return RetractSummary{}, &records.FieldError{Field: "record_ids", Value: "", Problem: "is empty (want at least one record_id to retract)"}
	}
	if err := s.acquireWriter(ctx); err != nil {
		return RetractSummary{}, err
	}
	defer s.releaseWriter()
	uniq := slices.Clone(ids)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	var sum RetractSummary
	err := s.update(func(tx *bolt.Tx) error {
		sum = RetractSummary{}
		recs := tx.Bucket(bucketRecords)
		deltas := make(map[counterKey]int64)
		var unknown []string
		for _, id := range uniq {
			v := recs.Get([]byte(id))
			if v == nil {
				unknown = append(unknown, id)
				continue
			}
			k, q, ok := decodeRecordValue(v)
			if !ok {
				return &CorruptError{Problem: fmt.Sprintf("record %q has a malformed value", id)}
			}
			deltas[k] -= int64(q)
		}
		if len(unknown) > 0 {
			// Report them in the order the caller gave them.
			var inOrder []string
			seen := map[string]bool{}
			for _, id := range ids {
				if !seen[id] && slices.Contains(unknown, id) {
					inOrder = append(inOrder, id)
				}
				seen[id] = true
			}
			return &UnknownRecordsError{IDs: inOrder, Of: len(uniq)}
		}
		for _, id := range uniq {
			if err := recs.Delete([]byte(id)); err != nil {
				return err
			}
		}
		if err := applyDeltas(tx, deltas); err != nil {
			return err
		}
		if err := addRecordCount(tx, -int64(len(uniq))); err != nil {
			return err
		}
		v, err := bumpDataVersion(tx)
		sum = RetractSummary{Retracted: uint64(len(uniq)), DataVersion: v}
		return err
	})
	if err != nil {
		return RetractSummary{}, err
	}
	if err := s.refreshRelease(); err != nil {
		// The retraction is committed; answers come from the previous
		// release until the next write or start computes this one.
		s.log.Error("compute the release after a retraction; answers stay on the previous release", "data", s.path, "err", err)
	}
	return sum, nil
}

// applyDeltas adds deltas to the counters, deleting cells that reach zero.
// A cell going negative means counters and records disagree: the
// transaction is refused with a *CorruptError.
func applyDeltas(tx *bolt.Tx, deltas map[counterKey]int64) error {
	list := make([]cellDelta, 0, len(deltas))
	for k, d := range deltas {
		if d != 0 {
			list = append(list, cellDelta{binary.BigEndian.Uint64(k[:]), d})
		}
	}
	slices.SortFunc(list, func(a, b cellDelta) int { return cmp.Compare(a.key, b.key) })
	return applySortedDeltas(tx, list)
}

// applySortedDeltas is applyDeltas for deltas in ascending key order.
func applySortedDeltas(tx *bolt.Tx, deltas []cellDelta) error {
	counters := tx.Bucket(bucketCounters)
	for _, e := range deltas {
		// A variable per iteration: bbolt keeps the key until the commit.
		var key counterKey
		binary.BigEndian.PutUint64(key[:], e.key)
		k := key[:]
		cur := int64(getUint64(counters.Get(k)))
		n := cur + e.delta
		switch {
		case n < 0:
			return &CorruptError{Problem: fmt.Sprintf("counter %s would go from %d to %d", key, cur, n)}
		case n == 0:
			if err := counters.Delete(k); err != nil {
				return err
			}
		default:
			if err := counters.Put(k, u64(uint64(n))); err != nil {
				return err
			}
		}
	}
	return nil
}

// bumpDataVersion increments the data version and returns the new one.
func bumpDataVersion(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	v := getUint64(meta.Get(keyDataVersion)) + 1
	return v, meta.Put(keyDataVersion, u64(v))
}

// Stats describe the store; they disclose no cell.
type Stats struct {
	Member        string
	Records       uint64
	CounterCells  uint64
	Disclosures   uint64
	DataVersion   uint64
	SchemaVersion uint32
	FileSizeBytes int64
}

// Stats returns the store's sizes and versions. The record count is kept in
// meta; counting the cells walks the pages of the counters bucket, which is
// bounded by cells, not records.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st = Stats{
			Member:        s.member,
			Records:       getUint64(meta.Get(keyRecords)),
			CounterCells:  uint64(tx.Bucket(bucketCounters).Stats().KeyN),
			DataVersion:   getUint64(meta.Get(keyDataVersion)),
			SchemaVersion: binary.BigEndian.Uint32(meta.Get(keySchemaVersion)),
			FileSizeBytes: tx.Size(),
		}
		if k, _ := tx.Bucket(bucketDisclosures).Cursor().Last(); k != nil {
			st.Disclosures = getUint64(k)
		}
		return nil
	})
	return st, err
}

// Proto returns the stats as GetNodeStats answers them.
func (st Stats) Proto() *fedreportv1.GetNodeStatsResponse {
	return &fedreportv1.GetNodeStatsResponse{
		Member:        st.Member,
		Records:       st.Records,
		CounterCells:  st.CounterCells,
		Disclosures:   st.Disclosures,
		DataVersion:   st.DataVersion,
		SchemaVersion: st.SchemaVersion,
		FileSizeBytes: st.FileSizeBytes,
	}
}

// Record returns the stored record with id, or nil when there is none
// (tests and local tools; records never leave the node over the API).
func (s *Store) Record(id string) (*fedreportv1.Record, error) {
	var rec *fedreportv1.Record
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get([]byte(id))
		if v == nil {
			return nil
		}
		r, ok := decodeRecord(id, v)
		if !ok {
			return &CorruptError{Problem: fmt.Sprintf("record %q has a malformed value", id)}
		}
		rec = r
		return nil
	})
	return rec, err
}
