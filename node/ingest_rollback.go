package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// An ingest stream writes its batches to the records bucket as it goes, each
// with an undo entry (ingest_undo.go), and sets the stream marker (keyStream)
// in meta until its commit. What it leaves in the undo bucket is settled by
// the next writer, the next start, or the stream itself at its commit or
// abort:
//
//   - a stream still open (the marker is set: a crash, a shutdown, an abort)
//     is rolled back (rollBackStream);
//   - a committed stream (no marker) leaves its undo entries behind as
//     garbage, which are purged (purgeUndo).
//
// Counters are untouched either way: a stream changes them only in its
// commit.

// rollbackChunk is how many records of an undo entry one rollback
// transaction restores once a whole entry's transaction has failed: on a
// full disk a transaction that rewrites a few pages fits in the pages the
// earlier ones freed, where one that restores 8,192 records needs more.
const rollbackChunk = 128

// purgeBatchEntries is how many undo entries of a committed stream one purge
// transaction deletes.
const purgeBatchEntries = 64

// settleStream rolls back an open stream or purges a committed one's undo
// entries; why ("open", "recover", "commit", "abort") chooses how loudly it
// logs. It is a no-op when there is neither an undo bucket nor a marker.
func (s *Store) settleStream(why string) error {
	var open, undo bool
	if err := s.view(func(tx *bolt.Tx) error {
		open = tx.Bucket(bucketMeta).Get(keyStream) != nil
		undo = tx.Bucket(bucketUndo) != nil
		return nil
	}); err != nil {
		return err
	}
	start := time.Now()
	switch {
	case open:
		restored, err := s.rollBackStream()
		if err != nil {
			return err
		}
		took := time.Since(start).Round(time.Millisecond)
		if why == "open" {
			s.log.Warn("rolled back an ingest stream left unfinished by a crash or shutdown", "data", s.path, "records_restored", restored, "took", took)
		} else {
			s.log.Info("rolled back an ingest stream", "data", s.path, "records_restored", restored, "took", took)
		}
	case undo:
		if err := s.purgeUndo(); err != nil {
			return err
		}
		took := time.Since(start).Round(time.Millisecond)
		if why == "open" {
			s.log.Info("purged the undo entries of a committed ingest stream", "data", s.path, "took", took)
		} else {
			s.log.Debug("purged the undo entries of a committed ingest stream", "data", s.path, "took", took)
		}
	}
	return nil
}

// rollBackStream rolls back the open stream: every record it replaced is
// restored and every record it added removed, from its undo entries, one
// entry per transaction so that memory stays flat whatever the stream's
// size. After a failed transaction (a full disk) it goes on rollbackChunk
// records per transaction. At the end it drops the undo bucket and clears
// the marker. It returns how many records it restored.
func (s *Store) rollBackStream() (uint64, error) {
	var restored uint64
	// chunk bounds the records of an entry restored per transaction: 0 (the
	// whole entry) until a transaction fails.
	chunk := s.rollbackChunk
	for {
		var (
			n    int
			done bool
		)
		err := s.update(func(tx *bolt.Tx) error {
			var err error
			n, done, err = rollbackStep(tx, chunk)
			return err
		})
		if err != nil {
			var corrupt *CorruptError
			if chunk == 0 && !errors.As(err, &corrupt) && !errors.Is(err, ErrClosed) {
				// A full disk, most likely: go on in transactions small
				// enough for the pages the earlier ones freed.
				s.log.Warn("rolling back an ingest stream in small transactions after a failed one", "data", s.path, "err", err)
				chunk = rollbackChunk
				continue
			}
			return restored, err
		}
		restored += uint64(n)
		if done {
			return restored, nil
		}
	}
}

// rollbackStep restores, in tx, the records of the next undo entry of the
// open stream (at most chunk of them when chunk > 0) and notes in meta
// (keyRollbackAt) how far it got; once no entry is left it drops the undo
// bucket and clears the marker, and done is true.
//
// Entries are restored in key order and not deleted one by one: deleting an
// entry rewrites the entries that share its node (up to four of ~200 KB),
// which on a full disk there is no room for; the bucket goes in one piece at
// the end.
func rollbackStep(tx *bolt.Tx, chunk int) (restored int, done bool, err error) {
	meta := tx.Bucket(bucketMeta)
	undo := tx.Bucket(bucketUndo)
	if undo != nil {
		key, entry := nextUndoEntry(undo.Cursor(), meta.Get(keyRollbackAt))
		if key != nil {
			restored, err = restoreUndoEntry(tx, key, entry, chunk)
			return restored, false, err
		}
		if err := tx.DeleteBucket(bucketUndo); err != nil {
			return 0, false, err
		}
	}
	if err := meta.Delete(keyRollbackAt); err != nil {
		return 0, false, err
	}
	return 0, true, meta.Delete(keyStream)
}

// nextUndoEntry returns the undo entry a rollback restores next: the one
// keyRollbackAt's value at names, unless it is done, else the first; nil
// when none is left.
func nextUndoEntry(c *bolt.Cursor, at []byte) (key []byte, entry undoBatch) {
	k, v := c.First()
	if len(at) == undoBatchKeyLen+4 {
		if k, v = c.Seek(at[:undoBatchKeyLen]); k != nil && isUndoBatchKey(k) {
			if n := undoBatch(v).count(); n >= 0 && rollbackFrom(at, k) >= n {
				k, v = c.Next() // that entry is done
			}
		}
	}
	return k, undoBatch(v)
}

// restoreUndoEntry puts back, in tx, the previous values the undo entry key
// holds, from where an earlier transaction stopped (keyRollbackAt) to the
// end or chunk records further, and notes the new position. It returns how
// many records it restored.
func restoreUndoEntry(tx *bolt.Tx, key []byte, entry undoBatch, chunk int) (int, error) {
	malformed := &CorruptError{Problem: fmt.Sprintf("the undo entry %x of an open ingest stream is malformed", key)}
	if !isUndoBatchKey(key) {
		return 0, malformed
	}
	// Copies: bbolt keeps the keys and values put until the commit, and the
	// entry's pages may be freed meanwhile.
	entry = undoBatch(bytes.Clone(entry))
	key = bytes.Clone(key)
	n := entry.count()
	if n < 0 {
		return 0, malformed
	}
	meta := tx.Bucket(bucketMeta)
	recs := tx.Bucket(bucketRecords)
	from := rollbackFrom(meta.Get(keyRollbackAt), key)
	to := n
	if chunk > 0 {
		to = min(n, from+chunk)
	}
	for i := from; i < to; i++ {
		id, prev, ok := entry.entry(i)
		if !ok {
			return 0, malformed
		}
		var err error
		if bytes.Equal(prev, undoAbsent) {
			err = recs.Delete(id)
		} else {
			err = recs.Put(id, prev)
		}
		if err != nil {
			return 0, err
		}
	}
	return max(to-from, 0), meta.Put(keyRollbackAt, binary.BigEndian.AppendUint32(key, uint32(max(to, from))))
}

// rollbackFrom is how many records of the undo entry key an earlier
// transaction of a rollback in small transactions restored: the count in
// at (keyRollbackAt's value) when at names key, else 0.
func rollbackFrom(at, key []byte) int {
	if len(at) != len(key)+4 || !bytes.Equal(at[:len(key)], key) {
		return 0
	}
	return int(binary.BigEndian.Uint32(at[len(key):]))
}

// purgeUndo deletes the undo entries of a committed stream,
// purgeBatchEntries per transaction (each entry's overflow pages are freed
// unread), then the undo bucket.
func (s *Store) purgeUndo() error {
	for {
		var done bool
		err := s.update(func(tx *bolt.Tx) error {
			var err error
			done, err = purgeStep(tx)
			return err
		})
		if err != nil || done {
			return err
		}
	}
}

// purgeStep deletes up to purgeBatchEntries undo entries in tx, or, when
// none is left, the undo bucket; done is true once the bucket is gone.
func purgeStep(tx *bolt.Tx) (done bool, err error) {
	undo := tx.Bucket(bucketUndo)
	if undo == nil {
		return true, nil
	}
	var keys [][]byte
	c := undo.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < purgeBatchEntries; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	if len(keys) == 0 {
		return true, tx.DeleteBucket(bucketUndo)
	}
	// Last key first: bbolt removes an element by shifting the ones after
	// it in its node, so deleting a node's keys from the back keeps that
	// linear instead of quadratic.
	for i := len(keys) - 1; i >= 0; i-- {
		if err := undo.Delete(keys[i]); err != nil {
			return false, err
		}
	}
	return false, nil
}
