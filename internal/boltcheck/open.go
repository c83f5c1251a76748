package boltcheck

import (
	"os"

	bolt "go.etcd.io/bbolt"
)

// OpenWalked checks the existing bbolt file at path page by page and opens
// it read-only with opts (ReadOnly set); it is `fedreport verify`'s open,
// and reads the whole file. Guard's checks come first, before bbolt maps the
// file; then the page walk, under the shared lock bbolt's read-only open
// takes, so that a file another process is writing is reported in use
// (bbolt's ErrTimeout, after opts.Timeout) rather than checked mid-write.
// bbolt reads only the meta pages before the walk has passed. A refused
// file gives a *DamageError, an empty one ErrEmpty; the caller closes the
// returned database.
func OpenWalked(path string, opts bolt.Options) (*bolt.DB, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := inspect(f)
	if err != nil {
		return nil, err
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
