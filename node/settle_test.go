package node

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// undoState reports whether the closed or open file at s has an undo bucket
// and a stream marker.
func undoState(t *testing.T, s *Store) (undo, marker bool) {
	t.Helper()
	err := s.view(func(tx *bolt.Tx) error {
		undo = tx.Bucket(bucketUndo) != nil
		marker = tx.Bucket(bucketMeta).Get(keyStream) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return undo, marker
}

func TestCommitPurgesTheUndoEntries(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	const n = ingestBatch + 100 // two batches
	ingest(t, s, genRecords(t, "FR", n, 21))
	// A correction of every record, then the same stream again.
	ingest(t, s, genRecords(t, "FR", n, 22))
	sum := ingest(t, s, genRecords(t, "FR", n, 22))
	if sum.Unchanged != n {
		t.Errorf("re-sent stream: %+v, want every record unchanged", sum)
	}
	if undo, marker := undoState(t, s); undo || marker {
		t.Errorf("after commit: undo bucket %v, stream marker %v; want neither", undo, marker)
	}
	if rep := mustVerify(t, s); rep.PurgePending || rep.Records != n {
		t.Errorf("verify: purge pending %v, %d records", rep.PurgePending, rep.Records)
	}
}

// TestOpenFinishesThePurgeOfACommittedStream is a crash after a stream's
// commit and before the purge of its undo entries ended: the stream is
// committed, so the start rolls forward. Rolling back instead would delete
// the records the undo entries call new, and the counters would no longer
// match them.
func TestOpenFinishesThePurgeOfACommittedStream(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fr.db")
	var logBuf safeBuffer
	opts := StoreOptions{Member: "FR", Policy: noSuppression, Now: func() time.Time { return testNow },
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}
	s, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	recs := genRecords(t, "FR", 1000, 23)
	ingest(t, s, recs)
	want := totals(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What the crash left: the commit's effects, and undo entries (each
	// record "absent before the stream") still there, with no marker; more
	// of them than one purge transaction deletes.
	const records = 100_000
	tamper(t, path, func(tx *bolt.Tx) error {
		undo, err := tx.CreateBucket(bucketUndo)
		if err != nil {
			return err
		}
		ids := make([][]byte, 0, records)
		for _, r := range recs {
			ids = append(ids, []byte(r.GetRecordId()))
		}
		for i := len(recs); i < records; i++ {
			ids = append(ids, fmt.Appendf(nil, "GB-%09d", i))
		}
		slices.SortFunc(ids, bytes.Compare)
		for seq := uint64(1); len(ids) > 0; seq++ {
			batch := ids[:min(len(ids), ingestBatch)]
			ids = ids[len(batch):]
			v := appendUndoBatchHeader(nil, len(batch))
			for i, id := range batch {
				v = appendUndoBatchEntry(v, i, id, undoAbsent)
			}
			if err := undo.Put(undoBatchKey(seq), v); err != nil {
				return err
			}
		}
		return nil
	})

	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.OpenStream || !rep.PurgePending || rep.Records != uint64(len(recs)) {
		t.Fatalf("offline verify: ok %v, open %v, purge pending %v, %d records, problems %q",
			rep.OK(), rep.OpenStream, rep.PurgePending, rep.Records, rep.Problems)
	}
	if !strings.Contains(rep.String(), "the next start purges them") {
		t.Errorf("report: %s", rep)
	}

	s, err = OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if undo, marker := undoState(t, s); undo || marker {
		t.Errorf("after open: undo bucket %v, stream marker %v; want neither", undo, marker)
	}
	if rep := mustVerify(t, s); rep.Records != uint64(len(recs)) || rep.DataVersion != 1 {
		t.Errorf("after open: %d records, data version %d; want %d, 1", rep.Records, rep.DataVersion, len(recs))
	}
	if got := totals(t, s); !equalTotals(got, want) {
		t.Errorf("totals: got %v, want %v", got, want)
	}
	if !strings.Contains(logBuf.String(), "purged the undo entries of a committed ingest stream") {
		t.Errorf("log: got %q, want the purge", logBuf.String())
	}
}

func TestRecordCountFollowsEveryWrite(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	check := func(what string, want uint64) {
		t.Helper()
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		rep := mustVerify(t, s)
		if st.Records != want || rep.Records != want {
			t.Errorf("%s: stats say %d records, verify counts %d; want %d", what, st.Records, rep.Records, want)
		}
	}
	check("empty", 0)
	ingest(t, s, genRecords(t, "FR", 100, 31))
	check("after 100 new", 100)
	ingest(t, s, genRecords(t, "FR", 150, 32)) // 100 corrected, 50 new
	check("after a correction with 50 new", 150)
	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Add("x.csv", genRecords(t, "GB", ingestBatch+5, 33)); err != nil {
		t.Fatal(err)
	}
	in.Abort()
	check("after an aborted stream", 150)
	if _, err := s.Retract(t.Context(), []string{"FR-000000001", "FR-000000002", "FR-000000001"}); err != nil {
		t.Fatal(err)
	}
	check("after retracting 2", 148)

	// A file from before meta kept the count gets it on open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tamper(t, s.Path(), func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyRecords) })
	if rep, err := Verify(s.Path()); err != nil || !rep.OK() {
		t.Fatalf("verify without a stored count: %v, %v", rep, err)
	}
	s2, err := OpenStore(s.Path(), StoreOptions{Member: "FR", Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st, err := s2.Stats(); err != nil || st.Records != 148 {
		t.Errorf("after open: stats %+v, %v; want 148 records", st, err)
	}

	// A wrong count is a problem verify names.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	tamper(t, s2.Path(), func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyRecords, u64(150)) })
	rep, err := Verify(s2.Path())
	if err != nil {
		t.Fatal(err)
	}
	if want := "meta records says 150 records, the records bucket holds 148"; rep.OK() || rep.Problems[0] != want {
		t.Errorf("verify of a wrong count: got %q, want %q", rep.Problems, want)
	}
}

// newestFreelist returns the freelist page id of the newest meta page of the
// bbolt file at path (bbolt's layout: a 16-byte page header, then magic,
// version, page size, flags, root bucket (16), freelist, high water, txid).
func newestFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pageSize := int(le.Uint32(b[16+8:]))
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if tx := le.Uint64(m[48:]); tx >= txid {
			txid, freelist = tx, le.Uint64(m[32:])
		}
	}
	return freelist
}

// TestCloseWritesTheFreelist checks the trade of boltOptions: commits skip
// the freelist, and Close writes it, so that a clean start need not walk
// the file to rebuild it.
func TestCloseWritesTheFreelist(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, genRecords(t, "FR", ingestBatch+1, 41))
	ingest(t, s, genRecords(t, "FR", ingestBatch+1, 42))
	if got := newestFreelist(t, s.Path()); got != boltcheck.NoFreelist {
		t.Errorf("after commits: freelist page %d, want none", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := newestFreelist(t, s.Path()); got == boltcheck.NoFreelist {
		t.Errorf("after Close: no freelist written")
	}
	// Verify's page walk compares the stored freelist with the pages in use.
	if rep, err := Verify(s.Path()); err != nil || !rep.OK() {
		t.Errorf("verify after Close: %v, %v", rep, err)
	}
	s2, err := OpenStore(s.Path(), StoreOptions{Member: "FR", Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ingest(t, s2, []*fedreportv1.Record{rec("FR-X", arrests, "2020-01-01", 1)})
	mustVerify(t, s2)
}

// TestOpenPurgesManyBatchUndoEntries is a crash after the commit of a stream
// with more batch undo entries than one purge transaction deletes.
func TestOpenPurgesManyBatchUndoEntries(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, genRecords(t, "FR", 100, 24))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tamper(t, s.Path(), func(tx *bolt.Tx) error {
		undo, err := tx.CreateBucket(bucketUndo)
		if err != nil {
			return err
		}
		for i := range 2*purgeBatchEntries + 3 {
			v := appendUndoBatchHeader(nil, 1)
			v = appendUndoBatchEntry(v, 0, fmt.Appendf(nil, "GB-%d", i), undoAbsent)
			if err := undo.Put(undoBatchKey(uint64(i+1)), v); err != nil {
				return err
			}
		}
		return nil
	})
	s2, err := OpenStore(s.Path(), StoreOptions{Member: "FR", Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if undo, marker := undoState(t, s2); undo || marker {
		t.Errorf("after open: undo bucket %v, stream marker %v; want neither", undo, marker)
	}
	if rep := mustVerify(t, s2); rep.Records != 100 {
		t.Errorf("after open: %d records, want 100", rep.Records)
	}
}

// TestRollbackInSmallTransactions aborts a stream of several batches that
// adds records and replaces others, rolled back as after a failed
// transaction (on a full disk): a few records per transaction, the progress
// kept in meta, the undo bucket dropped at the end. The file must be as
// before the stream.
func TestRollbackInSmallTransactions(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{MinCellCount: 3})
	base := genRecords(t, "FR", 3000, 21)
	ingest(t, s, base)
	before, err := s.Verify()
	if err != nil || !before.OK() {
		t.Fatalf("verify before: %v, %v", err, before)
	}
	want := sumByMetric(base)
	s.rollbackChunk = 100

	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Corrections of the base records, then new ones: three batches and more.
	var stream []*fedreportv1.Record
	for i, r := range base[:2000] {
		stream = append(stream, rec(r.GetRecordId(), arrests, "2020-04-04", uint32(1+i%3)))
	}
	stream = append(stream, genRecords(t, "XX", 3*ingestBatch, 22)...)
	for i := 0; i < len(stream); i += 1000 {
		if err := in.Add("fr.csv", stream[i:min(i+1000, len(stream))]); err != nil {
			t.Fatal(err)
		}
	}
	if entries := undoEntries(t, s); entries < 3 {
		t.Fatalf("%d undo entries, want at least 3", entries)
	}
	in.Abort()

	if undo, marker := undoState(t, s); undo || marker {
		t.Errorf("after the rollback: undo bucket %v, stream marker %v; want neither", undo, marker)
	}
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyRollbackAt); v != nil {
			t.Errorf("the rollback's progress %x is still in meta", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.Verify()
	if err != nil || !after.OK() || after.Records != before.Records || after.CounterCells != before.CounterCells {
		t.Fatalf("verify after: %v, %+v; want clean with %d records and %d cells", err, after, before.Records, before.CounterCells)
	}
	resp, err := s.Aggregate(&fedreportv1.AggregateRequest{From: "2000-01-01", To: "2020-12-31"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetCells() {
		if c.GetCount() != want[c.GetMetric()] {
			t.Errorf("%v: %d after the rollback, want %d", c.GetMetric(), c.GetCount(), want[c.GetMetric()])
		}
	}
}
