// Package floor measures what the disclosure log's durability costs on a
// disk before any node code runs: bbolt commits of one log-entry-sized
// value, each in a file of its own, alone or many at once. A node appends
// one entry to its log, durably, before every answer leaves (DESIGN.md), so
// on the same disk no Aggregate can be faster than one such commit, and no
// rollup faster than its members' commits made at once.
package floor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
)

// Options says what to measure.
type Options struct {
	// Dir is where the files are made (in a new directory, removed after):
	// on the file system of the data files the floor is for.
	Dir string
	// Files commit at once in every round; 1 times one file's commits.
	Files int
	// Rounds are timed, after Warmup untimed ones.
	Rounds, Warmup int
	// EntryBytes is the size of each committed value.
	EntryBytes int
}

// prefill is how many entries each file holds before the first round, so
// that a commit rewrites a leaf holding several entries and the branch page
// above it, as an append to a log does.
const prefill = 8

// Commits makes o.Rounds rounds in which each of o.Files files commits one
// more entry, every file on a goroutine of its own, and returns each round's
// wall time: for one file, its commit's; for many, the slowest's, which is
// what a rollup waits for.
func Commits(ctx context.Context, o Options) (_ stats.Latencies, err error) {
	if o.Files < 1 || o.Rounds < 1 || o.EntryBytes < 1 {
		return nil, fmt.Errorf("floor: want at least one file, round and byte, got %d, %d, %d", o.Files, o.Rounds, o.EntryBytes)
	}
	dir, err := os.MkdirTemp(o.Dir, "floor-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()

	logs := make([]*entryLog, o.Files)
	defer func() {
		for _, l := range logs {
			if l != nil {
				err = errors.Join(err, l.db.Close())
			}
		}
	}()
	entry := make([]byte, o.EntryBytes)
	for i := range entry {
		entry[i] = byte(i*131 + i>>8) // varied bytes, as an entry's are, not a run of zeros
	}
	for i := range logs {
		if logs[i], err = openLog(filepath.Join(dir, fmt.Sprintf("%03d.db", i))); err != nil {
			return nil, err
		}
		for range prefill {
			if err := logs[i].append(entry); err != nil {
				return nil, err
			}
		}
	}
	lat := make(stats.Latencies, 0, o.Rounds)
	for r := range o.Warmup + o.Rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := round(logs, entry); err != nil {
			return nil, err
		}
		if r >= o.Warmup {
			lat = append(lat, time.Since(start))
		}
	}
	return lat, nil
}

// round appends entry to every log at once and waits for all of them.
func round(logs []*entryLog, entry []byte) error {
	if len(logs) == 1 {
		return logs[0].append(entry)
	}
	errs := make([]error, len(logs))
	var wg sync.WaitGroup
	for i, l := range logs {
		wg.Go(func() { errs[i] = l.append(entry) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// entryLog is a bbolt file opened as a node opens its own, holding one
// bucket appended to as the disclosure log is.
type entryLog struct {
	db  *bolt.DB
	seq uint64
}

var bucket = []byte("log")

// logOptions are the options a node opens its file with (node/store.go):
// commits that do not write the freelist, the hash-map freelist.
var logOptions = bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}

// logFillPercent is the fill a node gives its disclosure log's bucket
// (node/disclosure.go): the keys only ever append.
const logFillPercent = 0.9

func openLog(path string) (*entryLog, error) {
	db, err := bolt.Open(path, 0o600, &logOptions)
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return &entryLog{db: db}, nil
}

func (l *entryLog) append(entry []byte) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		b.FillPercent = logFillPercent
		l.seq++
		return b.Put(binary.BigEndian.AppendUint64(nil, l.seq), entry)
	})
}
