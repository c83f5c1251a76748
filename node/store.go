package node

import (
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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
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
	// historyLimit is how many releases a block's history keeps before
	// it is dropped (maxHistory; tests lower it).
	historyLimit int
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

// boltOptions returns the options every open of a node's file uses. Commits skip writing the
// freelist (NoFreelistSync, as etcd does): with many free pages, as a large
// stream's undo entries leave behind, writing it at every commit costs
// megabytes per batch and, needing ever larger contiguous runs, makes the
// file grow pass after pass. Close writes it once (Store.Close), so a clean
// restart reads it back; after a crash bbolt rebuilds it on open by walking
// every page of the file. The hash-map freelist keeps allocation fast in big
// files.
func boltOptions(readOnly bool) *bolt.Options {
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

		maxAnswerBytes: cmp.Or(opts.MaxAnswerBytes, MaxAnswerBytes),
		historyLimit:   maxHistory,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	db, err := bolt.Open(path, 0o600, boltOptions(false))
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: %w: %s %s; stop that process, or give this node a --data file of its own", ErrInUse, path, boltcheck.HeldBy(path))
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
	err = s.settleStream("open")
	if err == nil {
		err = s.countRecordsIfMissing()
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: settle an ingest stream: %w", path, err)
	}
	if err := s.refreshRelease(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
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
	// Commits skip the freelist (boltOptions); writing it once here spares
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
	if err := s.settleStream("recover"); err != nil {
		s.releaseWriter()
		return err
	}
	return nil
}

func (s *Store) releaseWriter() {
	<-s.writer
}

// RetractSummary is what a retraction did.
type RetractSummary struct {
	Retracted   uint64
	DataVersion uint64
	// Missing is how many ids were not stored and were skipped
	// (RetractStored only).
	Missing uint64
}

// Retract removes the records with the given ids in one transaction and
// moves the counters back. If any id is not stored, nothing is removed and
// the error is an *UnknownRecordsError listing every unknown id. An id listed
// twice is retracted once.
func (s *Store) Retract(ctx context.Context, ids []string) (RetractSummary, error) {
	return s.retract(ctx, ids, false)
}

// RetractStored is Retract that removes the stored ones of ids and skips
// the others, counting them in RetractSummary.Missing; when none is stored
// nothing is written.
func (s *Store) RetractStored(ctx context.Context, ids []string) (RetractSummary, error) {
	return s.retract(ctx, ids, true)
}

func (s *Store) retract(ctx context.Context, ids []string, skipMissing bool) (RetractSummary, error) {
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
		if len(unknown) > 0 && skipMissing {
			uniq = slices.DeleteFunc(uniq, func(id string) bool { _, found := slices.BinarySearch(unknown, id); return found })
			sum.Missing = uint64(len(unknown))
			if len(uniq) == 0 {
				sum.DataVersion = getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))
				return nil
			}
		} else if len(unknown) > 0 {
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
		v, err := bumpDataVersion(tx, s.now())
		sum = RetractSummary{Retracted: uint64(len(uniq)), DataVersion: v, Missing: sum.Missing}
		return err
	})
	if err != nil {
		return RetractSummary{}, err
	}
	if sum.Retracted == 0 {
		return sum, nil // nothing changed
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

// bumpDataVersion increments the data version, notes now as the time of
// the last write, and returns the new version.
func bumpDataVersion(tx *bolt.Tx, now time.Time) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	v := getUint64(meta.Get(keyDataVersion)) + 1
	if err := meta.Put(keyLastWrite, u64(uint64(now.UnixNano()))); err != nil {
		return 0, err
	}
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
	// LastWrite is when the last write that changed the data was
	// committed; zero when none was recorded.
	LastWrite time.Time
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
		if v := meta.Get(keyLastWrite); len(v) == 8 {
			st.LastWrite = time.Unix(0, int64(getUint64(v))).UTC()
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
		LastWriteTime: timestampOrNil(st.LastWrite),
	}
}

// timestampOrNil is t as a Timestamp, or nil (unset) for the zero time.
func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
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
