package node

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestVerifyReportsDamagedPagesOrReadsSafely damages a real data file at
// every page's header and first elements, in two states (closed cleanly,
// with its freelist; and as a crash leaves it, without), and checks that
// Verify either reports each copy damaged, saying what to do, or reads it
// without the process dying; and that a node started on a copy Verify
// accepts reads it safely too. bbolt's own check follows a damaged page id
// out of its mapping and faults: no recover catches that, and this test
// binary would die. CheckFile, which reads only the meta pages, accepts
// these copies: a node does not walk its file at start.
func TestVerifyReportsDamagedPagesOrReadsSafely(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, genRecords(t, "FR", 3000, 7))
	ids := make([]string, 0, 500)
	for _, r := range genRecords(t, "FR", 500, 7) {
		ids = append(ids, r.GetRecordId())
	}
	if _, err := s.Retract(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		totals(t, s) // disclosure log entries
	}
	// A copy taken while the store is open is the file as a crash leaves
	// it: every commit in it, and no freelist (boltOptions).
	crashed, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clean, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, file := range []struct {
		name string
		data []byte
	}{{"crashed", crashed}, {"closed", clean}} {
		pageSize := int(binary.LittleEndian.Uint32(file.data[16+8:]))
		m, err := boltcheck.ReadMeta(strings.NewReader(string(file.data)))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Freelist != boltcheck.NoFreelist; got != (file.name == "closed") {
			t.Fatalf("%s file: freelist written %v", file.name, got)
		}
		path := filepath.Join(dir, file.name+".db")
		if err := os.WriteFile(path, file.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckFile(path); err != nil {
			t.Fatalf("%s file, undamaged: %v", file.name, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		refused, read := 0, 0
		for page := 2; page < int(m.HWM); page++ {
			// The header's id, flags, count and overflow, and the first two
			// elements' offsets and lengths (or a branch's child ids).
			for _, off := range []int{0, 8, 16, 24, 32, 40} {
				for _, junk := range []uint32{0xDEADBEEF, 0x00000FF0} {
					at := page*pageSize + off
					var b [8]byte
					binary.LittleEndian.PutUint32(b[:], junk)
					binary.LittleEndian.PutUint32(b[4:], junk)
					if _, err := f.WriteAt(b[:], int64(at)); err != nil {
						t.Fatal(err)
					}
					restore := func() {
						if _, err := f.WriteAt(file.data[at:at+8], int64(at)); err != nil {
							t.Fatal(err)
						}
					}
					if err := CheckFile(path); err != nil {
						t.Fatalf("%s file, page %d+%d: CheckFile: %v, want it to leave the pages to Verify", file.name, page, off, err)
					}
					rep, err := Verify(path)
					if err != nil {
						t.Fatalf("%s file, page %d+%d: Verify: %v", file.name, page, off, err)
					}
					if rep.Damaged {
						if rep.OK() || !strings.Contains(rep.String(), "restore it from a backup") {
							t.Fatalf("%s file, page %d+%d: got %v, want a report saying what to do", file.name, page, off, rep)
						}
						refused++
						restore()
						continue
					}
					// Accepted: whatever bbolt reads is inside the file.
					// The junk may sit in a value (a record, a count, a log
					// entry), which Verify reports and the store may refuse.
					read++
					if file.name != "crashed" {
						restore()
						continue
					}
					// A node starts on it, as after a crash: bbolt rebuilds
					// the freelist by walking the pages.
					st, err := OpenStore(path, StoreOptions{Member: "FR", Policy: noSuppression, Now: func() time.Time { return testNow }})
					if err != nil {
						restore()
						continue
					}
					_, _ = st.Aggregate(&fedreportv1.AggregateRequest{From: "2000-01-01", To: "2024-06-30",
						GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}}, "test")
					_, _, _ = st.ListDisclosures(0, "", "")
					if err := st.Close(); err != nil {
						t.Fatalf("%s file, page %d+%d: close: %v", file.name, page, off, err)
					}
					// The store wrote to the file: put all of it back.
					if _, err := f.WriteAt(file.data, 0); err != nil {
						t.Fatal(err)
					}
					if err := f.Truncate(int64(len(file.data))); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		t.Logf("%s file: %d pages, %d damaged copies reported, %d read", file.name, m.HWM, refused, read)
		if refused == 0 {
			t.Errorf("%s file: no damaged copy was reported", file.name)
		}
	}
}

// TestCheckFileRefusesTruncatedFilesAndDamagedMetaPages checks the guard a
// node runs at every start: what bbolt cannot open without faulting is
// refused with what to do, and a file bbolt can open (one meta page
// damaged: it uses the other) is left to it.
func TestCheckFileRefusesTruncatedFilesAndDamagedMetaPages(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, noSuppression)
	ingest(t, s, genRecords(t, "FR", 3000, 7))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(good[16+8:]))
	m, err := boltcheck.ReadMeta(strings.NewReader(string(good)))
	if err != nil {
		t.Fatal(err)
	}
	junk := func(b []byte, from, to int) []byte {
		b = slices.Clone(b)
		for i := from; i < to; i++ {
			b[i] = 0xAB
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		refuse bool
	}{
		{"sound", good, false},
		{"empty", nil, false},
		{"truncated to half", good[:int(m.HWM)/2*pageSize], true},
		{"truncated to two pages", good[:2*pageSize], true},
		{"both meta pages overwritten", junk(good, 0, 2*pageSize), true},
		{"one meta page overwritten", junk(good, pageSize, 2*pageSize), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "fr.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := CheckFile(path)
			var ce *CorruptError
			switch {
			case !tc.refuse && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.refuse && (!errors.As(err, &ce) || !strings.Contains(err.Error(), "restore it from a backup")):
				t.Errorf("got %v, want a refusal saying what to do", err)
			}
		})
	}
}
