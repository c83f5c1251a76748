package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	"github.com/isa-alliance/fedreport/internal/records"
)

// maxProblems caps the problems a report lists; Problems counts them all.
const maxProblems = 100

// Report is what Verify found in a data file.
type Report struct {
	Path          string
	Member        string
	SchemaVersion uint32
	DataVersion   uint64
	Records       uint64
	CounterCells  uint64
	Disclosures   uint64
	// OpenStream is set when an unfinished ingest stream was found. The
	// counters are then checked against the records as the rollback on the
	// next start will leave them.
	OpenStream bool
	// PurgePending is set when the undo entries of a committed stream are
	// still in the file (the node stopped while purging them); the next
	// start deletes them. They play no part in the checks.
	PurgePending bool
	// Problems lists the first maxProblems problems, most important first:
	// meta, records, counters, then the disclosure chain.
	Problems []string
	// ProblemCount is the number of problems found.
	ProblemCount int
	// Damaged is set when the file's pages could not be read: nothing in
	// it was checked.
	Damaged bool
	// Coordinator is set when the file is a coordinator's data file, not
	// a node's: nothing in it was checked.
	Coordinator bool

	committedRecords uint64 // records as the rollback of an open stream leaves them
}

func (r *Report) problem(format string, args ...any) {
	r.ProblemCount++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return r.ProblemCount == 0 }

// Err returns nil for a clean file, or an error naming the first problem.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	more := ""
	if r.ProblemCount > 1 {
		more = fmt.Sprintf(" (and %d more problems)", r.ProblemCount-1)
	}
	return fmt.Errorf("verify %s: %s%s", r.Path, r.Problems[0], more)
}

// Verify checks the data file at path offline, opened read-only: meta is
// well formed, every record decodes, the counters equal a recount of the
// records, and the disclosure chain is intact. The error is for a file that
// cannot be read at all (ErrInUse while a node holds it); what is wrong
// inside the file is in the report.
func Verify(path string) (*Report, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	// The pages are checked before bbolt reads any of them: bbolt follows
	// a damaged page id out of its mapping, and the fault kills the process.
	db, err := boltcheck.OpenWalked(path, *boltOptions(true))
	if de, ok := boltcheck.Damage(err); ok {
		return damagedReport(path, de.Problem), nil
	}
	switch {
	case errors.Is(err, boltcheck.ErrEmpty):
		return damagedReport(path, "is empty: not a node's data file"), nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("verify: %w: %s %s; verify reads a file no process is writing: stop that process first", ErrInUse, path, boltcheck.HeldBy(path))
	case err != nil:
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	defer db.Close()
	var rep *Report
	err = db.View(func(tx *bolt.Tx) error {
		rep = verifyTxSafely(tx, path)
		return nil
	})
	return rep, err
}

// damagedReport is the report on a file whose pages cannot be read:
// problem completes "the file ...".
func damagedReport(path, problem string) *Report {
	rep := &Report{Path: path, Damaged: true}
	rep.problem("the file %s; restore it from a backup", problem)
	return rep
}

// String summarises the report for people, one finding per line.
func (r *Report) String() string {
	var b strings.Builder
	if r.Damaged || r.Coordinator {
		fmt.Fprintf(&b, "%s: not checked: %s", r.Path, r.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%s: member %s, schema version %d, data version %d\n", r.Path, r.Member, r.SchemaVersion, r.DataVersion)
	fmt.Fprintf(&b, "  %d records, %d counter cells, %d disclosures\n", r.Records, r.CounterCells, r.Disclosures)
	if r.OpenStream {
		b.WriteString("  an unfinished ingest stream is present; the next start rolls it back (checked as rolled back)\n")
	}
	if r.PurgePending {
		b.WriteString("  undo entries of a committed ingest stream are present; the next start purges them\n")
	}
	if r.OK() {
		b.WriteString("  ok: counters equal the records, disclosure chain intact")
		return b.String()
	}
	fmt.Fprintf(&b, "  %d problem(s):", r.ProblemCount)
	for _, p := range r.Problems {
		b.WriteString("\n  - " + p)
	}
	if r.ProblemCount > len(r.Problems) {
		fmt.Fprintf(&b, "\n  ... and %d more", r.ProblemCount-len(r.Problems))
	}
	return b.String()
}

// Verify checks the open store as Verify checks a file, in one read
// transaction (for tests and for an operator's check of a running node).
func (s *Store) Verify() (*Report, error) {
	var rep *Report
	err := s.view(func(tx *bolt.Tx) error {
		rep = verifyTx(tx, s.path)
		return nil
	})
	return rep, err
}

// verifyTxSafely is verifyTx for a file that may be damaged: bbolt panics
// on some malformed pages, and a verifier must report that, not crash.
// (bbolt's own tx.Check is not used: on a file written with NoFreelistSync
// it rebuilds the freelist in a goroutine that panics on a damaged page,
// which no recover can catch.)
func verifyTxSafely(tx *bolt.Tx, path string) (rep *Report) {
	partial := &Report{Path: path}
	defer func() {
		if r := recover(); r != nil {
			rep = partial
			rep.problem("the file is damaged: reading it failed: %v", r)
		}
	}()
	return verifyTx(tx, path)
}

func verifyTx(tx *bolt.Tx, path string) *Report {
	rep := &Report{Path: path}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		rep.problem("no meta bucket: not a fedreport node data file")
		return rep
	}
	if isCoordinatorFile(tx) {
		rep.Coordinator = true
		rep.problem("it is a coordinator's data file, not a node's; give --data a stopped node's file")
		return rep
	}
	if v := meta.Get(keySchemaVersion); len(v) == 4 {
		rep.SchemaVersion = binary.BigEndian.Uint32(v)
		if rep.SchemaVersion != SchemaVersion {
			rep.problem("schema version %d: this fedreport reads version %d", rep.SchemaVersion, SchemaVersion)
			return rep
		}
	} else {
		rep.problem("meta schema_version is missing or malformed")
		return rep
	}
	rep.Member = string(meta.Get(keyMember))
	if !validMemberCode(rep.Member) {
		rep.problem("meta member %q is not a member code", rep.Member)
	}
	if v := meta.Get(keyDataVersion); len(v) == 8 {
		rep.DataVersion = binary.BigEndian.Uint64(v)
	} else {
		rep.problem("meta data_version is missing or malformed")
	}
	undo := tx.Bucket(bucketUndo)
	rep.OpenStream = meta.Get(keyStream) != nil
	if !rep.OpenStream && undo != nil {
		// A committed stream's undo entries: garbage, not a rollback.
		rep.PurgePending = true
		undo = nil
	}
	verifyCounters(tx, undo, rep)
	verifyRecordCount(meta, rep)
	verifyChain(tx, rep)
	return rep
}

// verifyRecordCount compares the record count kept in meta with the recount
// (as a rollback of an open stream would leave it). A file written before
// meta kept the count has none; the node's next start fills it in.
func verifyRecordCount(meta *bolt.Bucket, rep *Report) {
	v := meta.Get(keyRecords)
	switch {
	case v == nil:
	case len(v) != 8:
		rep.problem("meta records is malformed")
	case binary.BigEndian.Uint64(v) != rep.committedRecords:
		rep.problem("meta records says %d records, the records bucket holds %d", binary.BigEndian.Uint64(v), rep.committedRecords)
	}
}

func validMemberCode(s string) bool {
	if len(s) < 2 || len(s) > 8 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') }) < 0
}

// verifyCounters recounts the records (as a rollback of an open stream would
// leave them) and compares with the counters. Memory is bounded by cells.
func verifyCounters(tx *bolt.Tx, undo *bolt.Bucket, rep *Report) {
	recs := tx.Bucket(bucketRecords)
	counters := tx.Bucket(bucketCounters)
	if recs == nil || counters == nil || tx.Bucket(bucketDisclosures) == nil {
		rep.problem("a bucket is missing (want records, counters, disclosures, meta)")
		return
	}
	want := make(map[counterKey]uint64)
	add := func(id, v []byte) {
		if err := records.ValidateRecordID(string(id)); err != nil {
			rep.problem("record %q: %v", id, err)
		}
		k, q, ok := decodeRecordValue(v)
		if !ok {
			rep.problem("record %q: malformed value %x", id, v)
			return
		}
		want[k] += uint64(q)
	}
	c := recs.Cursor()
	for id, v := c.First(); id != nil; id, v = c.Next() {
		rep.Records++
		rep.committedRecords++
		add(id, v)
	}
	if undo != nil {
		// The rollback takes each record the stream wrote out of the
		// count and puts back what it replaced.
		unwrite := func(id, prev []byte) {
			if cur := recs.Get(id); cur != nil {
				rep.committedRecords--
				if k, q, ok := decodeRecordValue(cur); ok {
					want[k] -= uint64(q)
				}
			}
			if !bytes.Equal(prev, undoAbsent) {
				rep.committedRecords++
				add(id, prev)
			}
		}
		uc := undo.Cursor()
		for k, v := uc.First(); k != nil; k, v = uc.Next() {
			if !isUndoBatchKey(k) || !undoBatch(v).each(unwrite) {
				rep.problem("undo entry %x of the open stream: malformed", k)
			}
		}
	}
	cc := counters.Cursor()
	for k, v := cc.First(); k != nil; k, v = cc.Next() {
		rep.CounterCells++
		if len(k) != counterKeyLen || len(v) != 8 {
			rep.problem("counter key %x: malformed key or value", k)
			continue
		}
		key := counterKey(k)
		stored := binary.BigEndian.Uint64(v)
		if !key.valid() || key.metric() == 0 {
			rep.problem("counter key %x: not a metric and dimensions", k)
			continue
		}
		got := want[key]
		delete(want, key)
		switch {
		case stored == 0:
			rep.problem("counter %s: stored 0 (zero cells are deleted)", key)
		case stored != got:
			rep.problem("counter %s: stored %d, records give %d", key, stored, got)
		}
	}
	missing := make([]counterKey, 0, len(want))
	for k, n := range want {
		if n != 0 {
			missing = append(missing, k)
		}
	}
	slices.SortFunc(missing, func(a, b counterKey) int { return bytes.Compare(a[:], b[:]) })
	for _, k := range missing {
		rep.problem("counter %s: missing, records give %d", k, want[k])
	}
}

// verifyChain walks the disclosure log: seq continuity, each entry's hash,
// and each prev_hash link.
func verifyChain(tx *bolt.Tx, rep *Report) {
	b := tx.Bucket(bucketDisclosures)
	if b == nil {
		return
	}
	prev := make([]byte, hashLen)
	var want uint64 = 1
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		rep.Disclosures++
		if len(k) != 8 {
			rep.problem("disclosure key %x: malformed", k)
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			rep.problem("disclosure %d: out of sequence (the log jumps from %d to %d)", seq, want-1, seq)
		}
		want = seq + 1
		if len(v) < hashLen {
			rep.problem("disclosure %d: value shorter than its hash", seq)
			prev = make([]byte, hashLen)
			continue
		}
		sum := sha256.Sum256(v[hashLen:])
		if !bytes.Equal(sum[:], v[:hashLen]) {
			rep.problem("disclosure %d: entry hash mismatch", seq)
		}
		e, err := decodeDisclosure(v)
		switch {
		case err != nil:
			rep.problem("disclosure %d: %v", seq, err)
		case e.GetSeq() != seq:
			rep.problem("disclosure %d: entry says seq %d", seq, e.GetSeq())
		case !bytes.Equal(e.GetPrevHash(), prev):
			rep.problem("disclosure %d: prev_hash does not match the entry hash of disclosure %d", seq, seq-1)
		}
		prev = bytes.Clone(v[:hashLen])
	}
}
