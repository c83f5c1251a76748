package boltcheck

import (
	"errors"
	"os"

	bolt "go.etcd.io/bbolt"
)

// ErrEmpty is Open's error for an empty file, which bbolt would initialise
// rather than read.
var ErrEmpty = errors.New("the file is empty")

// DamageError is a file Open refused: Problem completes a sentence about
// the file ("is truncated: ...", "is damaged: page 43, ...").
type DamageError struct{ Problem string }

func (e *DamageError) Error() string { return "the file " + e.Problem }

// Open checks the existing bbolt file at path and opens it read-only with
// opts (ReadOnly set): inspect before bbolt maps the file, then pages under
// the shared lock bbolt's read-only open takes, so that a file another
// process is writing is reported in use (bbolt's ErrTimeout, after
// opts.Timeout) rather than checked mid-write. bbolt reads only the meta
// pages before pages has passed, and inspect has checked those. A refused
// file gives a *DamageError, an empty one ErrEmpty; the caller closes the
// returned database.
func Open(path string, opts bolt.Options) (*bolt.DB, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, empty, problem, err := inspect(f)
	switch {
	case err != nil:
		return nil, err
	case empty:
		return nil, ErrEmpty
	case problem != "":
		return nil, &DamageError{Problem: problem}
	}
	opts.ReadOnly = true
	db, err := bolt.Open(path, 0o600, &opts)
	if err != nil {
		return nil, err
	}
	if err := pages(f, m); err != nil {
		_ = db.Close()
		return nil, &DamageError{Problem: "is damaged: " + err.Error()}
	}
	return db, nil
}

// Damage returns err's *DamageError, if it is one.
func Damage(err error) (*DamageError, bool) {
	var de *DamageError
	return de, errors.As(err, &de)
}
