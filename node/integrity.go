package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/isa-alliance/fedreport/internal/boltmap"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt internal/common): a 16-byte
// page header, then magic, version, page size, flags, the root bucket
// (root page, sequence), the freelist page, the high-water page id, the
// transaction id and an FNV-64a checksum of the fields before it.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltMetaLen    = 4 + 4 + 4 + 4 + 16 + 8 + 8 + 8 // up to the checksum
)

// CheckFile checks a data file before a node opens it, so that a damaged
// file is refused with a clear error instead of crashing the node or being
// served from: the file must be as long as its newest valid meta page says
// (a truncated file would fault when read), and bbolt's structural check
// (every page reachable once, no page both used and free) must pass. A
// missing file is fine: the node creates it.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check data file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check data file: %w", err)
	}
	if st.Size() == 0 {
		return nil // bbolt initialises an empty file
	}
	need, err := boltHighWater(f)
	if err != nil {
		return &CorruptError{Problem: fmt.Sprintf("%s: %v; restore it from a backup", path, err)}
	}
	if st.Size() < need {
		return &CorruptError{Problem: fmt.Sprintf("%s is truncated: its pages reach byte %d but the file holds %d; restore it from a backup", path, need, st.Size())}
	}
	return structuralCheck(path)
}

// boltHighWater returns the file length the newest valid meta page needs.
func boltHighWater(r io.ReaderAt) (int64, error) {
	var best struct {
		txid, end uint64
		ok        bool
	}
	buf := make([]byte, boltPageHeader+boltMetaLen+8)
	pageSize := int64(0)
	for i := range 2 {
		off := int64(i) * pageSize
		if i == 1 && pageSize == 0 {
			break
		}
		if _, err := r.ReadAt(buf, off); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		le := binary.LittleEndian
		if le.Uint32(m[0:]) != boltMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(m[:boltMetaLen])
		if h.Sum64() != le.Uint64(m[boltMetaLen:]) {
			continue
		}
		ps := le.Uint32(m[8:])
		if i == 0 {
			pageSize = int64(ps)
		}
		pgid, txid := le.Uint64(m[40:]), le.Uint64(m[48:])
		if !best.ok || txid > best.txid {
			best.txid, best.end, best.ok = txid, pgid*uint64(ps), true
		}
		if i == 0 && pageSize == 0 {
			break
		}
	}
	if !best.ok {
		return 0, errors.New("no valid bbolt meta page (not a fedreport data file, or its header is damaged)")
	}
	return int64(best.end), nil
}

// structuralCheck opens the file read-only and runs bbolt's consistency
// check, turning any panic of a damaged file into an error.
func structuralCheck(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Problem: fmt.Sprintf("%s is damaged (%v); restore it from a backup", path, r)}
		}
	}()
	// The free pages are loaded in Open, here: read-only, bbolt would load
	// them lazily inside Check, in the checker's goroutine, racing with the
	// release below (a read transaction reads the freelist) and out of
	// reach of the recover above.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return ErrInUse
	}
	if err != nil {
		return &CorruptError{Problem: fmt.Sprintf("%s cannot be opened (%v); restore it from a backup", path, err)}
	}
	defer db.Close()
	// The check reads every page of the file: release them as it goes, so
	// that a node starting on a large file does not map all of it.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer boltmap.ReleasePeriodically(db, &wg, nil)()
	return db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			// Drain the channel so the checker's goroutine ends, keep the first.
			if err == nil {
				err = &CorruptError{Problem: fmt.Sprintf("%s is damaged: %v; restore it from a backup", path, cerr)}
			}
		}
		return err
	})
}
