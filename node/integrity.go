package node

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
)

// CheckFile checks a data file before a node opens it, so that a truncated
// file or one with damaged meta pages is refused with a clear error instead
// of crashing the node (boltcheck.Guard). It reads the meta pages only;
// damage inside the pages is found by Verify (`fedreport verify`). A
// missing or empty file is fine: the node creates it.
func CheckFile(path string) error {
	err := boltcheck.Guard(path)
	if de, ok := boltcheck.Damage(err); ok {
		return damaged(path, de.Problem)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, boltcheck.ErrEmpty):
		return nil // the node creates it
	}
	return fmt.Errorf("check data file: %w", err)
}

// damaged is the refusal of a damaged file: problem completes a sentence
// about it ("is truncated: ...").
func damaged(path, problem string) error {
	return &CorruptError{Problem: fmt.Sprintf("%s %s; restore it from a backup", path, problem)}
}
