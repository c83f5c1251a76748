package node

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestUndoBatchEncoding(t *testing.T) {
	t.Parallel()
	ids := [][]byte{[]byte("A"), []byte("FR-000000002"), []byte("FR-000000010"), []byte("z")}
	val := recordValue{byte(arrests)}
	var b []byte
	b = appendUndoBatchHeader(b, len(ids))
	for i, id := range ids {
		prev := undoAbsent
		if i%2 == 1 {
			prev = val[:]
		}
		b = appendUndoBatchEntry(b, i, id, prev)
	}
	var got [][]byte
	if !undoBatch(b).each(func(id, prev []byte) { got = append(got, id) }) || !slices.EqualFunc(got, ids, bytes.Equal) {
		t.Fatalf("each: got %q, want %q", got, ids)
	}
	for _, tt := range []struct {
		id   string
		want bool
	}{{"A", true}, {"FR-000000010", true}, {"z", true}, {"0", false}, {"FR-000000003", false}, {"zz", false}} {
		if found, ok := undoBatch(b).has([]byte(tt.id)); !ok || found != tt.want {
			t.Errorf("has(%q): got %v, %v; want %v, true", tt.id, found, ok, tt.want)
		}
	}
	// Every truncation is malformed, never a panic.
	for n := range len(b) {
		ub := undoBatch(b[:n])
		if ub.each(func(id, prev []byte) {}) {
			t.Errorf("each of the first %d bytes: ok, want malformed", n)
		}
		ub.has([]byte("z"))
	}
}

func TestStreamSpans(t *testing.T) {
	t.Parallel()
	var s streamSpans
	s.addBatch("b", "d", []byte{1})
	s.addBatch("m", "p", []byte{2})
	s.cover("f", "h")
	for _, tt := range []struct {
		lo, hi string
		want   bool
	}{{"a", "a", false}, {"a", "b", true}, {"e", "e", false}, {"d", "e", true}, {"e", "l", true}, {"i", "l", false}, {"q", "z", false}, {"a", "z", true}} {
		if got := s.overlaps(tt.lo, tt.hi); got != tt.want {
			t.Errorf("overlaps(%s, %s): got %v, want %v", tt.lo, tt.hi, got, tt.want)
		}
	}
	s.cover("c", "n")
	if want := []idSpan{{"b", "p"}}; !slices.Equal(s.covered, want) {
		t.Errorf("covered after a merge: got %v, want %v", s.covered, want)
	}
	for _, tt := range []struct {
		id   string
		want int
	}{{"a", -1}, {"c", 0}, {"e", -1}, {"m", 1}, {"q", -1}} {
		if got, _ := s.batchFor(tt.id, 0); got != tt.want {
			t.Errorf("batchFor(%s): got %d, want %d", tt.id, got, tt.want)
		}
	}
}

// undoEntries counts the entries in the undo bucket.
func undoEntries(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		if undo := tx.Bucket(bucketUndo); undo != nil {
			n = undo.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// modelStream is one ingest stream of a random shape over a pool of ids.
type modelStream struct {
	recs    []*fedreportv1.Record
	order   string
	dupAt   int // index in recs of a record_id sent twice, or -1
	outcome string
}

var (
	modelOrders   = []string{"sorted", "reversed", "shuffled", "sorted runs shuffled", "two sorted halves"}
	modelOutcomes = []string{"commit", "duplicate", "commit", "abort", "crash", "commit"}
)

func newModelStream(rng *rand.Rand, pool, n int, order, outcome string) modelStream {
	ids := rng.Perm(pool)[:n]
	ms := modelStream{order: order, outcome: outcome, dupAt: -1}
	switch ms.order {
	case "sorted", "two sorted halves":
		slices.Sort(ids)
		if ms.order == "two sorted halves" {
			h := len(ids) / 2
			ids = append(ids[h:], ids[:h]...)
		}
	case "reversed":
		slices.Sort(ids)
		slices.Reverse(ids)
	case "sorted runs shuffled":
		slices.Sort(ids)
		var runs [][]int
		for len(ids) > 0 {
			k := min(len(ids), 1+rng.IntN(3*ingestBatch))
			runs = append(runs, ids[:k])
			ids = ids[k:]
		}
		rng.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
		ids = slices.Concat(runs...)
	}
	dates := []string{"2020-01-01", "2020-02-15", "2020-07-31"}
	for _, id := range ids {
		m := records.Metrics()[rng.IntN(len(records.Metrics()))]
		ms.recs = append(ms.recs, rec(fmt.Sprintf("FR-%06d", id), m, dates[rng.IntN(len(dates))], uint32(1+rng.IntN(3))))
	}
	if outcome == "duplicate" {
		// A record_id again, later in the stream.
		i := rng.IntN(len(ms.recs) - 1)
		j := i + 1 + rng.IntN(len(ms.recs)-i-1)
		ms.recs = slices.Insert(ms.recs, j+1, rec(ms.recs[i].GetRecordId(), arrests, "2020-03-03", 1))
		ms.dupAt = j + 1
	}
	return ms
}

// TestIngestMatchesAModel runs streams of every shape (in key order,
// reversed, shuffled, in shuffled sorted runs; so with batches written as
// they come and batches merged from the spill file) against a map of what should be stored: commits, aborts,
// crashes and refused duplicates.
func TestIngestMatchesAModel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fr.db")
	opts := StoreOptions{Member: "FR", Policy: noSuppression, Now: func() time.Time { return testNow }}
	s, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]*fedreportv1.Record{}
	const pool = 4 * ingestBatch
	for round := range len(modelOrders) * 2 {
		ms := newModelStream(rng, pool, ingestBatch/2+rng.IntN(5*ingestBatch/2),
			modelOrders[round%len(modelOrders)], modelOutcomes[round%len(modelOutcomes)])
		what := fmt.Sprintf("round %d, %d records %s, %s", round, len(ms.recs), ms.order, ms.outcome)
		in, err := s.BeginIngest(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(ms.recs) && err == nil; i += 2000 {
			err = in.Add("model.csv", ms.recs[i:min(i+2000, len(ms.recs))])
		}
		switch ms.outcome {
		case "duplicate":
			if err == nil {
				_, err = in.Commit()
			}
			var de *DuplicateRecordError
			if !errors.As(err, &de) || de.Index != uint64(ms.dupAt+1) || de.ID != ms.recs[ms.dupAt].GetRecordId() {
				t.Fatalf("%s: got %v, want the duplicate %s at %d", what, err, ms.recs[ms.dupAt].GetRecordId(), ms.dupAt+1)
			}
			in.Abort()
		case "abort":
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			// Clean means the counters and the record count match the
			// records as the rollback will leave them.
			if rep, err := s.Verify(); err != nil || !rep.OK() || rep.OpenStream != (len(ms.recs) >= ingestBatch) {
				t.Fatalf("%s: verify of the open stream: %v, %v; want it clean, open once a batch was written", what, rep, err)
			}
			in.Abort()
		case "crash":
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if rep, err := Verify(path); err != nil || !rep.OK() || rep.OpenStream != (len(ms.recs) >= ingestBatch) {
				t.Fatalf("%s: offline verify: %v, %v; want it clean, open once a batch was written", what, rep, err)
			}
			if s, err = OpenStore(path, opts); err != nil {
				t.Fatal(err)
			}
		case "commit":
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if undoEntries(t, s) == 0 && len(ms.recs) >= ingestBatch {
				t.Fatalf("%s: no undo entries before the commit", what)
			}
			if _, err := in.Commit(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			for _, r := range ms.recs {
				model[r.GetRecordId()] = r
			}
		}
		rep := mustVerify(t, s)
		if rep.Records != uint64(len(model)) {
			t.Fatalf("%s: %d records, want %d", what, rep.Records, len(model))
		}
		err = s.view(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRecords).ForEach(func(id, v []byte) error {
				want, ok := model[string(id)]
				day, _ := records.ParseDate(want.GetDate())
				if enc := encodeRecord(want, day); !ok || !bytes.Equal(v, enc[:]) {
					return fmt.Errorf("record %s: stored %x, want %v", id, v, want)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// TestAStreamOutOfKeyOrderIsSortedAtCommit checks where a stream's batches
// go: to the file while their ids lie outside every earlier batch's range,
// to the spill file from the first that does not, and from there, merged,
// to the file at Commit.
func TestAStreamOutOfKeyOrderIsSortedAtCommit(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	recs := genRecords(t, "FR", 3*ingestBatch, 51)
	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	// The last batch's ids first, then the first's: both are ranges of
	// their own.
	for _, b := range [][]*fedreportv1.Record{recs[2*ingestBatch:], recs[:ingestBatch]} {
		if err := in.Add("x.csv", b); err != nil {
			t.Fatal(err)
		}
	}
	if entries := undoEntries(t, s); entries != 2 || in.spill != nil {
		t.Errorf("two disjoint batches: %d undo entries, spill file %v; want 2, none", entries, in.spill != nil)
	}
	// The middle batch, its last id swapped for one beyond every other: it
	// overlaps the last batch. A correction of a record of the first batch
	// comes after it.
	mid := slices.Clone(recs[ingestBatch : 2*ingestBatch])
	mid[len(mid)-1] = rec("FR-999999999", arrests, "2020-01-01", 1)
	if err := in.Add("x.csv", mid); err != nil {
		t.Fatal(err)
	}
	if entries := undoEntries(t, s); entries != 2 || in.spill == nil || len(in.spill.runs) != 1 {
		t.Fatalf("then an overlapping batch: %d undo entries, spill file %v; want 2 and one run", entries, in.spill)
	}
	if entries, err := os.ReadDir(filepath.Dir(s.Path())); err != nil || len(entries) != 1 {
		t.Errorf("the data directory holds %v, %v; want only the data file (the spill file is unlinked)", entries, err)
	}
	sum, err := in.Commit()
	if err != nil || sum.Added != 3*ingestBatch {
		t.Fatalf("commit: %+v, %v; want %d added", sum, err, 3*ingestBatch)
	}
	if entries := undoEntries(t, s); entries != 0 {
		t.Errorf("after commit: %d undo entries; want none", entries)
	}
	if rep := mustVerify(t, s); rep.Records != 3*ingestBatch {
		t.Errorf("after commit: %d records, want %d", rep.Records, 3*ingestBatch)
	}
}

func TestCellDeltasMatchAMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var c cellDeltas
	want := map[counterKey]int64{}
	for range 200_000 {
		// Few cells, so that sums cancel out to zero too.
		k := makeCounterKey(arrests, uint32(18000+rng.IntN(3000)), fedreportv1.Offence(rng.IntN(3)), 0, 0)
		d := int64(rng.IntN(7)) - 3
		c.add(k, d)
		want[k] += d
	}
	got := c.sorted()
	if !slices.IsSortedFunc(got, func(a, b cellDelta) int { return cmp.Compare(a.key, b.key) }) {
		t.Fatal("sums out of order")
	}
	for _, e := range got {
		var k counterKey
		binary.BigEndian.PutUint64(k[:], e.key)
		if e.delta == 0 || want[k] != e.delta {
			t.Fatalf("cell %s: got %d, want %d", k, e.delta, want[k])
		}
		delete(want, k)
	}
	for k, d := range want {
		if d != 0 {
			t.Fatalf("cell %s: missing, want %d", k, d)
		}
	}
}
