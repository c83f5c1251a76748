package node

import (
	"errors"
	"fmt"
	"io/fs"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
)

// CheckFile checks a data file before a node opens it, so that a damaged
// file is refused with a clear error instead of crashing the node or being
// served from: the file must be as long as its newest valid meta page says
// (a truncated file would fault when read), and every page must be sound
// (boltcheck.Open: every page reachable once, no page both used and free, keys
// in order, nothing reaching outside its page). A missing file is fine: the
// node creates it.
func CheckFile(path string) error {
	db, err := boltcheck.Open(path, bolt.Options{Timeout: openTimeout})
	if de, ok := boltcheck.Damage(err); ok {
		return damaged(path, de.Problem)
	}
	switch {
	case err == nil:
		return db.Close()
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, boltcheck.ErrEmpty):
		return nil // the node creates it
	case errors.Is(err, berrors.ErrTimeout):
		return ErrInUse
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("check data file: %w", err)
	}
	return damaged(path, fmt.Sprintf("cannot be opened (%v)", err))
}

// damaged is the refusal of a damaged file: problem completes a sentence
// about it ("is truncated: ...").
func damaged(path, problem string) error {
	return &CorruptError{Problem: fmt.Sprintf("%s %s; restore it from a backup", path, problem)}
}
