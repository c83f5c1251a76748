package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

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
}

// openStore opens (or creates) the bbolt file at path, checks its schema
// version and marks every rollup still RUNNING as INTERRUPTED: a RUNNING
// rollup found at start belongs to a coordinator process that is gone.
// It returns the ids of the rollups it interrupted.
func openStore(path string) (*store, []string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open store %q: %w", path, err)
	}
	var interrupted []string
	err = db.Update(func(tx *bolt.Tx) error {
		interrupted = nil // Update may not retry, but keep the closure idempotent.
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
	return &store{db: db}, interrupted, nil
}

// close closes the bbolt file.
func (s *store) close() error {
	return s.db.Close()
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
func (s *store) finish(r *fedreportv1.Rollup) error {
	if r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
		return fmt.Errorf("finish rollup %s: still RUNNING", r.GetId())
	}
	seq, ok := parseRollupID(r.GetId())
	if !ok {
		return fmt.Errorf("finish rollup %q: %w", r.GetId(), ErrRollupNotFound)
	}
	b, err := marshalRollup(r)
	if err != nil {
		return fmt.Errorf("finish rollup %s: %w", r.GetId(), err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		rollups := tx.Bucket(bucketRollups)
		k := seqKey(seq)
		v := rollups.Get(k)
		if v == nil {
			return ErrRollupNotFound
		}
		old := &fedreportv1.Rollup{}
		if err := proto.Unmarshal(v, old); err != nil {
			return err
		}
		if old.GetState() != fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
			return ErrRollupFinished
		}
		if err := rollups.Put(k, b); err != nil {
			return err
		}
		return tx.Bucket(bucketRunning).Delete(k)
	})
	if err != nil {
		return fmt.Errorf("finish rollup %s: %w", r.GetId(), err)
	}
	return nil
}

// get returns the rollup with the given id.
func (s *store) get(id string) (*fedreportv1.Rollup, error) {
	seq, ok := parseRollupID(id)
	if !ok {
		return nil, fmt.Errorf("rollup %q: %w (ids look like %s)", id, ErrRollupNotFound, rollupID(42))
	}
	r := &fedreportv1.Rollup{}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRollups).Get(seqKey(seq))
		if v == nil {
			return ErrRollupNotFound
		}
		// Unmarshal copies what it keeps, so nothing aliases the mmap
		// after the transaction ends.
		return proto.Unmarshal(v, r)
	})
	if errors.Is(err, ErrRollupNotFound) {
		return nil, fmt.Errorf("rollup %q: %w", id, ErrRollupNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get rollup %s: %w", id, err)
	}
	return r, nil
}

// list returns up to limit rollups, newest first, starting at seq from
// (inclusive; 0 means the newest) and keeping only those in state (UNSPECIFIED
// keeps all). next is the seq to continue from, or 0 when there is no more.
func (s *store) list(limit int, from uint64, state fedreportv1.RollupState) (page []*fedreportv1.Rollup, next uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		page, next = nil, 0
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
		scanned := 0
		for ; k != nil; k, v = c.Prev() {
			seq, ok := keySeq(k)
			if !ok {
				continue
			}
			if len(page) == limit || scanned == listScanLimit {
				next = seq
				return nil
			}
			scanned++
			r := &fedreportv1.Rollup{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("decode rollup %d: %w", seq, err)
			}
			if state != fedreportv1.RollupState_ROLLUP_STATE_UNSPECIFIED && r.GetState() != state {
				continue
			}
			page = append(page, r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list rollups: %w", err)
	}
	return page, next, nil
}
