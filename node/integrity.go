package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
)

// CheckFile checks a data file before a node opens it, so that a damaged
// file is refused with a clear error instead of crashing the node or being
// served from: the file must be as long as its newest valid meta page says
// (a truncated file would fault when read), and every page must be sound
// (boltcheck.Pages: every page reachable once, no page both used and free, keys
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
	m, empty, problem, err := boltcheck.Inspect(f)
	if err != nil || empty {
		return err
	}
	if problem != "" {
		return damaged(path, problem)
	}
	// bbolt's read-only open takes the file's shared lock, so that a file
	// a node is writing is reported in use rather than checked mid-write.
	// It reads only the meta pages, which boltcheck.Inspect has checked.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return ErrInUse
	}
	if err != nil {
		return damaged(path, fmt.Sprintf("cannot be opened (%v)", err))
	}
	defer db.Close()
	if err := boltcheck.Pages(f, m); err != nil {
		return damaged(path, "is damaged: "+err.Error())
	}
	return nil
}

// damaged is the refusal of a damaged file: problem completes a sentence
// about it ("is truncated: ...").
func damaged(path, problem string) error {
	return &CorruptError{Problem: fmt.Sprintf("%s %s; restore it from a backup", path, problem)}
}
