package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"

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
// (a truncated file would fault when read), and every page must be sound
// (checkPages: every page reachable once, no page both used and free, keys
// in order, nothing reaching outside its page). A missing file is fine: the
// node creates it.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check data file: %w", err)
	}
	defer f.Close()
	m, empty, problem, err := inspectFile(f)
	if err != nil || empty {
		return err
	}
	if problem != "" {
		return damaged(path, problem)
	}
	// bbolt's read-only open takes the file's shared lock, so that a file
	// a node is writing is reported in use rather than checked mid-write.
	// It reads only the meta pages, which inspectFile has checked.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return ErrInUse
	}
	if err != nil {
		return damaged(path, fmt.Sprintf("cannot be opened (%v)", err))
	}
	defer db.Close()
	if err := checkPages(f, m); err != nil {
		return damaged(path, "is damaged: "+err.Error())
	}
	return nil
}

// damaged is the refusal of a damaged file: problem completes a sentence
// about it ("is truncated: ...").
func damaged(path, problem string) error {
	return &CorruptError{Problem: fmt.Sprintf("%s %s; restore it from a backup", path, problem)}
}

// inspectFile reads the meta page bbolt would open f with and checks that
// the file holds every page it counts. An empty file is fine (bbolt
// initialises it). problem, when not empty, says what is wrong with the
// file, worded to follow its name ("is truncated: ..."); err is a failure
// to read it.
func inspectFile(f *os.File) (m boltMeta, empty bool, problem string, err error) {
	st, err := f.Stat()
	if err != nil {
		return m, false, "", fmt.Errorf("check data file: %w", err)
	}
	if st.Size() == 0 {
		return m, true, "", nil
	}
	if m, err = readBoltMeta(f); err != nil {
		return m, false, "has " + err.Error(), nil
	}
	if need := m.hwm * uint64(m.pageSize); uint64(st.Size()) < need {
		return m, false, fmt.Sprintf("is truncated: its pages reach byte %d but the file holds %d", need, st.Size()), nil
	}
	return m, false, "", nil
}

// readBoltMeta returns the meta page bbolt opens: of the two, the valid
// one with the higher transaction id.
func readBoltMeta(r io.ReaderAt) (boltMeta, error) {
	var best boltMeta
	ok := false
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
		cur := boltMeta{pageSize: ps, root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
		if !ok || cur.txid > best.txid {
			best, ok = cur, true
		}
		if i == 0 && pageSize == 0 {
			break
		}
	}
	if !ok {
		return best, errors.New("no valid bbolt meta page (not a fedreport data file, or its header is damaged)")
	}
	return best, nil
}
