package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// reasonRestarted is the failure_reason of a rollup that was running when the
// coordinator stopped and was found RUNNING on the next start.
const reasonRestarted = "coordinator restarted while the rollup ran"

// listScanLimit bounds how many stored rollups one ListRollups page reads, so
// a rare state filter over a long history cannot hold a read transaction for
// long; the page then comes back short with a next_page_token (AIP-158).
const listScanLimit = 10000

// store keeps every rollup in the coordinator's own bbolt file.
type store struct {
	db *bolt.DB
	// basic and full keep finished rollups as read, in each view apart, so
	// that reading the large FULL view does not evict the small BASIC one.
	basic, full *rollupCache

	closeOnce sync.Once
	closeErr  error
}

// openStore opens (or creates) the bbolt file at path, checks its schema
// version and marks every rollup still RUNNING as INTERRUPTED: a RUNNING
// rollup found at start belongs to a coordinator process that is gone.
// It returns the ids of the rollups it interrupted.
func openStore(path string) (*store, []string, error) {
	// An existing file is checked read-only first: opening it for writing
	// may already write to it (bbolt writes out a freelist a node's file
	// does not keep), and a file that is not the coordinator's must stay
	// as it was.
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := checkFile(path); errors.Is(err, ErrInUse) {
			return nil, nil, fmt.Errorf("open store: %w", err)
		} else if err != nil {
			return nil, nil, fmt.Errorf("open store %q: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("open store: %w", inUse(path))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open store %q: %w", path, err)
	}
	var interrupted []string
	err = db.Update(func(tx *bolt.Tx) error {
		interrupted = nil // Update may not retry, but keep the closure idempotent.
		if err := checkOwnFile(tx); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchemaVersion); v == nil {
			if err := meta.Put(keySchemaVersion, binary.BigEndian.AppendUint32(nil, schemaVersion)); err != nil {
				return err
			}
		} else if len(v) != 4 || binary.BigEndian.Uint32(v) != schemaVersion {
			return fmt.Errorf("%w: file has %x, this coordinator writes %d", ErrSchemaVersion, v, schemaVersion)
		}
		rollups, err := tx.CreateBucketIfNotExists(bucketRollups)
		if err != nil {
			return err
		}
		running, err := tx.CreateBucketIfNotExists(bucketRunning)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketSchedules); err != nil {
			return err
		}
		var seqs [][]byte
		if err := running.ForEach(func(k, _ []byte) error {
			seqs = append(seqs, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range seqs {
			if err := running.Delete(k); err != nil {
				return err
			}
			v := rollups.Get(k)
			if v == nil {
				continue
			}
			r := &fedreportv1.Rollup{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("decode rollup %x: %w", k, err)
			}
			if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
				continue
			}
			r.State = fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED
			r.FailureReason = reasonRestarted
			b, err := marshalRollup(r)
			if err != nil {
				return err
			}
			if err := rollups.Put(k, b); err != nil {
				return err
			}
			interrupted = append(interrupted, r.GetId())
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("open store %q: %w", path, err)
	}
	return &store{db: db, basic: newRollupCache(basicCacheBytes), full: newRollupCache(fullCacheBytes)}, interrupted, nil
}

// openTimeout bounds the wait for the file lock, so that a second process
// gets ErrInUse instead of hanging.
const openTimeout = time.Second

// checkFile checks the existing file at path before it is opened for
// writing: that its meta pages and length are sound (boltcheck.Guard: a
// truncated file would otherwise kill the process when read), and that it
// is a coordinator's data file (checkOwnFile).
func checkFile(path string) error {
	err := boltcheck.Guard(path)
	if de, ok := boltcheck.Damage(err); ok {
		return damaged(de.Problem)
	}
	switch {
	case errors.Is(err, boltcheck.ErrEmpty):
		return nil
	case err != nil:
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return inUse(path)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error { return checkOwnFile(tx) })
}

// inUse is the refusal of a file another process holds, naming it.
func inUse(path string) error {
	return fmt.Errorf("%w: %s %s; stop that process, or give this coordinator a --data file of its own", ErrInUse, path, boltcheck.HeldBy(path))
}

// damaged is the refusal of a damaged file: problem completes "the file".
func damaged(problem string) error {
	return fmt.Errorf("the file %s; restore it from a backup (the rollup history is in it)", problem)
}

// checkOwnFile returns a *NotCoordinatorFileError unless the file is empty
// (no buckets: new) or has a meta bucket without a node's member code. The
// schema version is checked by the caller.
func checkOwnFile(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := tx.ForEach(func([]byte, *bolt.Bucket) error { return errNotEmpty }) == nil
		if empty {
			return nil
		}
		return &NotCoordinatorFileError{}
	}
	if member := meta.Get(keyNodeMember); member != nil {
		return &NotCoordinatorFileError{Member: string(member)}
	}
	return nil
}

// errNotEmpty ends checkOwnFile's walk over the buckets at the first one.
var errNotEmpty = errors.New("not empty")

// close closes the bbolt file. It is safe to call more than once.
func (s *store) close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// marshalRollup encodes a rollup deterministically, so equal rollups are
// stored as equal bytes.
func marshalRollup(r *fedreportv1.Rollup) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r)
}

// create stores r as a new rollup, which must be RUNNING, and sets its id.
func (s *store) create(r *fedreportv1.Rollup) error {
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
		return fmt.Errorf("create rollup: state %v, want RUNNING", r.GetState())
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rollups := tx.Bucket(bucketRollups)
		seq, err := rollups.NextSequence()
		if err != nil {
			return err
		}
		r.Id = rollupID(seq)
		b, err := marshalRollup(r)
		if err != nil {
			return err
		}
		if err := rollups.Put(seqKey(seq), b); err != nil {
			return err
		}
		return tx.Bucket(bucketRunning).Put(seqKey(seq), nil)
	})
	if err != nil {
		return fmt.Errorf("create rollup: %w", err)
	}
	return nil
}

// finish replaces the RUNNING rollup r.Id by r, which must have finished.
// bucketRunning lists exactly the RUNNING rollups (create adds each, finish
// and openStore remove it), so finish reads the marker rather than decoding
// the stored record.
func (s *store) finish(r *fedreportv1.Rollup) error {
	if r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
		return fmt.Errorf("finish rollup %s: still RUNNING", r.GetId())
	}
	seq, ok := parseRollupID(r.GetId())
	if !ok {
		return fmt.Errorf("finish rollup %s: %w", echo.Quote(r.GetId()), ErrRollupNotFound)
	}
	b, err := marshalRollup(r)
	if err != nil {
		return fmt.Errorf("finish rollup %s: %w", r.GetId(), err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		k := seqKey(seq)
		rollups, running := tx.Bucket(bucketRollups), tx.Bucket(bucketRunning)
		if rollups.Get(k) == nil {
			return ErrRollupNotFound
		}
		// A marker's value is empty; Get returns it as a non-nil empty slice,
		// nil only for a missing key, since create wrote it in an earlier
		// transaction.
		if running.Get(k) == nil {
			return ErrRollupFinished
		}
		if err := rollups.Put(k, b); err != nil {
			return err
		}
		return running.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("finish rollup %s: %w", r.GetId(), err)
	}
	return nil
}

// cache is the cache of the view.
func (s *store) cache(full bool) *rollupCache {
	if full {
		return s.full
	}
	return s.basic
}

// decode returns stored rollup seq, v, in the view: from the cache, or
// decoded and, when finished, cached. v is bbolt's mapping: Unmarshal copies
// what it keeps, so nothing returned aliases it after the transaction ends.
// The result is shared with every reader and must not be modified.
func (s *store) decode(seq uint64, v []byte, state fedreportv1.RollupState, full bool) (*fedreportv1.Rollup, error) {
	if r := s.cache(full).get(seq, full); r != nil {
		return r, nil
	}
	r := &fedreportv1.Rollup{}
	if err := proto.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode rollup %d: %w", seq, err)
	}
	if !full {
		r = basicView(r)
	}
	if state != fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
		s.cache(full).add(seq, full, r)
	}
	return r, nil
}

// get returns the rollup with the given id in the view (full: FULL). The
// result is shared with every reader and must not be modified.
func (s *store) get(id string, full bool) (*fedreportv1.Rollup, error) {
	seq, ok := parseRollupID(id)
	if !ok {
		return nil, fmt.Errorf("rollup %s: %w (ids look like %s)", echo.Quote(id), ErrRollupNotFound, rollupID(42))
	}
	if r := s.cache(full).get(seq, full); r != nil {
		return r, nil
	}
	var r *fedreportv1.Rollup
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRollups).Get(seqKey(seq))
		if v == nil {
			return ErrRollupNotFound
		}
		state, err := storedState(v)
		if err != nil {
			return err
		}
		r, err = s.decode(seq, v, state, full)
		return err
	})
	if errors.Is(err, ErrRollupNotFound) {
		// Say what there is: a mistyped id is told the newest.
		newest := ""
		_ = s.db.View(func(tx *bolt.Tx) error {
			if k, _ := tx.Bucket(bucketRollups).Cursor().Last(); k != nil {
				if last, ok := keySeq(k); ok {
					newest = rollupID(last)
				}
			}
			return nil
		})
		if newest == "" {
			return nil, fmt.Errorf("rollup %s: %w (none is stored yet)", echo.Quote(id), ErrRollupNotFound)
		}
		return nil, fmt.Errorf("rollup %s: %w (the newest is %s)", echo.Quote(id), ErrRollupNotFound, newest)
	}
	if err != nil {
		return nil, fmt.Errorf("get rollup %s: %w", echo.Quote(id), err)
	}
	return r, nil
}

// errPageFull is what a scan callback returns to end the page before the
// rollup it was given, which the next page starts with.
var errPageFull = errors.New("page full")

// list returns up to limit rollups in the view (full: FULL), newest first,
// starting at seq from (inclusive; 0 means the newest) and keeping only those
// in state (UNSPECIFIED keeps all). next is the seq to continue from, or 0
// when there is no more. The rollups are shared with every reader and must
// not be modified.
func (s *store) list(limit int, from uint64, state fedreportv1.RollupState, full bool) (page []*fedreportv1.Rollup, next uint64, err error) {
	var bytes grpcsrv.PageBytes
	next, err = s.scan(limit, from, state, func(seq uint64, v []byte, st fedreportv1.RollupState) error {
		r, err := s.decode(seq, v, st, full)
		if err != nil {
			return err
		}
		if !bytes.Add(protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(r))) {
			return errPageFull
		}
		page = append(page, r)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return page, next, nil
}

// scan is list calling fn, newest first, with the stored encoding and the
// state of each rollup of the page (fn must copy what it keeps: the bytes
// are bbolt's mapping). The state filter reads only the rollup's state
// field, so rollups it leaves out are never decoded.
func (s *store) scan(limit int, from uint64, state fedreportv1.RollupState, fn func(seq uint64, stored []byte, state fedreportv1.RollupState) error) (next uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		next = 0
		c := tx.Bucket(bucketRollups).Cursor()
		var k, v []byte
		if from == 0 {
			k, v = c.Last()
		} else {
			k, v = c.Seek(seqKey(from))
			if k == nil {
				k, v = c.Last()
			} else if seq, _ := keySeq(k); seq > from {
				k, v = c.Prev()
			}
		}
		scanned, kept := 0, 0
		for ; k != nil; k, v = c.Prev() {
			seq, ok := keySeq(k)
			if !ok {
				continue
			}
			if kept == limit || scanned == listScanLimit {
				next = seq
				return nil
			}
			scanned++
			st, err := storedState(v)
			if err != nil {
				return fmt.Errorf("decode rollup %d: %w", seq, err)
			}
			if state != fedreportv1.RollupState_ROLLUP_STATE_UNSPECIFIED && st != state {
				continue
			}
			kept++
			if err := fn(seq, v, st); err != nil {
				if errors.Is(err, errPageFull) {
					next = seq
					return nil
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list rollups: %w", err)
	}
	return next, nil
}

// errBadEncoding is storedState's error for bytes that are not a protobuf
// message at their top level.
var errBadEncoding = errors.New("stored rollup is not a valid encoding")

// storedState checks that v, a stored rollup, is a sequence of well-formed
// protobuf fields at its top level and returns its state (field 2; the last
// one wins, as when decoding; UNSPECIFIED when absent). It decodes none of
// the nested messages, so it costs a small fraction of proto.Unmarshal.
func storedState(v []byte) (fedreportv1.RollupState, error) {
	const stateField = 2 // Rollup.state
	var state fedreportv1.RollupState
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, errBadEncoding
		}
		v = v[n:]
		if num == stateField && typ == protowire.VarintType {
			x, m := protowire.ConsumeVarint(v)
			if m < 0 {
				return 0, errBadEncoding
			}
			state = fedreportv1.RollupState(int32(x))
			v = v[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, v)
		if m < 0 {
			return 0, errBadEncoding
		}
		v = v[m:]
	}
	return state, nil
}
