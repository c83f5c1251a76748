// Package boltmap keeps a bbolt file's read-only mapping out of the
// process's resident set.
package boltmap

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt reads a data file through a shared read-only mapping, and every page
// a transaction touches (with the kernel's fault-around, its cached
// neighbours too, up to a whole large folio) stays in the process's resident
// set until the mapping is replaced. A stream that compares every record (a
// re-sent or corrected file), the purge of its undo entries, a check that
// walks the whole file: each would make the node's RSS as large as its file,
// though none of it is the node's own memory. So the node (and the coordinator) release the
// mapped pages as it goes: a page dropped from the mapping stays in the page
// cache, and the next read faults it back in.

// ReleaseInterval is how often a running write or check releases the pages
// it has read (ReleasePeriodically).
const ReleaseInterval = 20 * time.Millisecond

// Release drops the pages of db's file mapped so far from the
// process's resident set. It is safe at any time, even under a running
// transaction: a later read faults the page in again from the page cache,
// unchanged, since bbolt writes with pwrite and never rewrites a page a
// transaction may read. The read transaction keeps bbolt from replacing the
// mapping meanwhile (a remap waits for open read transactions); every page
// in use lies below tx.Size(), and the mapping is at least that long.
func Release(db *bolt.DB) {
	_ = db.View(func(tx *bolt.Tx) error {
		Drop(tx.DB().Info().Data, tx.Size())
		return nil
	})
}

// ReleasePeriodically calls Release(db) every ReleaseInterval, in a
// goroutine counted in wg, until the returned stop is called (which waits for
// the goroutine and releases once more) or quit is closed.
func ReleasePeriodically(db *bolt.DB, wg *sync.WaitGroup, quit <-chan struct{}) (stop func()) {
	stopped := make(chan struct{})
	exited := make(chan struct{})
	wg.Go(func() {
		defer close(exited)
		t := time.NewTicker(ReleaseInterval)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-quit:
				return
			case <-t.C:
				Release(db)
			}
		}
	})
	return func() {
		close(stopped)
		<-exited
		Release(db)
	}
}
