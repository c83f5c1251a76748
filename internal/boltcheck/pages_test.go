package boltcheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// sample writes a small bbolt file with every kind of page a walk meets:
// branch and leaf pages, a nested bucket, an inline bucket, a value on
// overflow pages, free pages and (closed cleanly) a written freelist.
func sample(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 4096, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		a, err := tx.CreateBucket([]byte("a"))
		if err != nil {
			return err
		}
		for i := range 400 {
			if err := a.Put(fmt.Appendf(nil, "key-%04d", i), bytes.Repeat([]byte{byte(i)}, 40)); err != nil {
				return err
			}
		}
		sub, err := a.CreateBucket([]byte("sub"))
		if err != nil {
			return err
		}
		if err := sub.Put([]byte("big"), bytes.Repeat([]byte{7}, 10000)); err != nil {
			return err
		}
		in, err := tx.CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		return in.Put([]byte("k"), []byte("v"))
	})
	if err == nil {
		// Free some pages, so that the freelist is not empty.
		err = db.Update(func(tx *bolt.Tx) error {
			for i := range 200 {
				if err := tx.Bucket([]byte("a")).Delete(fmt.Appendf(nil, "key-%04d", i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func check(b []byte) error {
	m, err := ReadMeta(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if need := m.HWM * uint64(m.PageSize); uint64(len(b)) < need {
		return fmt.Errorf("truncated")
	}
	return pages(bytes.NewReader(b), m)
}

const ps = 4096

// pagesOf returns the ids of the pages of b that are in use (bbolt, on the
// undamaged file, says they are not free) with the given type flags and at
// least n elements.
func pagesOf(t *testing.T, b []byte, flags uint16, n uint16) []int {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	err = db.View(func(tx *bolt.Tx) error {
		le := binary.LittleEndian
		for id := 2; id < int(tx.Size()/ps); id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil || info.Type == "free" {
				continue
			}
			if le.Uint16(b[id*ps+8:]) == flags && le.Uint16(b[id*ps+10:]) >= n {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatalf("no page of type %#x with %d elements", flags, n)
	}
	return ids
}

func TestPagesAcceptsWhatBboltWrites(t *testing.T) {
	t.Parallel()
	b := sample(t)
	m, err := ReadMeta(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Freelist == NoFreelist {
		t.Fatal("the sample has no written freelist")
	}
	if err := check(b); err != nil {
		t.Fatalf("a file bbolt wrote: %v", err)
	}
}

// TestPagesNamesEachDamage damages one field at a time and checks that the
// walk names what is wrong.
func TestPagesNamesEachDamage(t *testing.T) {
	t.Parallel()
	good := sample(t)
	le := binary.LittleEndian
	branch := pagesOf(t, good, 0x01, 2)[0]
	leaf := pagesOf(t, good, 0x02, 2)[0]
	m, _ := ReadMeta(bytes.NewReader(good))
	for _, tc := range []struct {
		name   string
		damage func(b []byte)
		want   string
	}{
		{"a child id past the file", func(b []byte) { le.PutUint64(b[branch*ps+16+8:], 1<<40) }, "outside the file's pages"},
		{"a child reached twice", func(b []byte) {
			le.PutUint64(b[branch*ps+16+16+8:], le.Uint64(b[branch*ps+16+8:]))
		}, "in use twice"},
		{"a page that names another", func(b []byte) { le.PutUint64(b[leaf*ps:], uint64(leaf+1)) }, "the page says it is page"},
		{"a page of no type", func(b []byte) { le.PutUint16(b[leaf*ps+8:], 0x08) }, "page type 0x8"},
		{"more elements than fit", func(b []byte) { le.PutUint16(b[leaf*ps+10:], 0xFFF0) }, "elements do not fit"},
		{"a key past its page", func(b []byte) { le.PutUint32(b[leaf*ps+16+4:], 0x10000) }, "reach byte"},
		{"overflow past the file", func(b []byte) { le.PutUint32(b[leaf*ps+12:], 1<<30) }, "overflow pages reach past"},
		{"keys out of order", func(b []byte) {
			// Element 1's key becomes element 0's: equal keys.
			e0, e1 := leaf*ps+16, leaf*ps+32
			k0 := b[e0+int(le.Uint32(b[e0+4:])):][:le.Uint32(b[e0+8:])]
			copy(b[e1+int(le.Uint32(b[e1+4:])):], k0)
		}, "does not follow"},
		{"a page both free and in use", func(b []byte) {
			f := int(m.Freelist) * ps
			le.PutUint64(b[f+16:], uint64(leaf)) // the freelist's first id
		}, "in use and free"},
		{"a page neither free nor in use", func(b []byte) {
			f := int(m.Freelist) * ps
			le.PutUint16(b[f+10:], le.Uint16(b[f+10:])-1) // drop the last free id
		}, "neither in use nor free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tc.damage(b)
			err := check(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzPages walks damaged copies of a small bbolt file: the walk reads
// what a disk or an operator left, and must return an error, never panic.
func FuzzPages(f *testing.F) {
	good := sample(f)
	f.Add(uint32(0), uint64(0))
	f.Add(uint32(2*ps+16+8), uint64(1<<40))
	f.Add(uint32(3*ps+10), uint64(0xFFFF))
	f.Fuzz(func(t *testing.T, at uint32, v uint64) {
		b := bytes.Clone(good)
		at %= uint32(len(b) - 8)
		binary.LittleEndian.PutUint64(b[at:], v)
		_ = check(b)
	})
}

// TestGuardReadsOnlyTheMetaPages checks the split between Guard (every
// start) and the page walk (fedreport verify): Guard refuses what bbolt
// cannot open without faulting, and leaves damage inside the pages to the
// walk.
func TestGuardReadsOnlyTheMetaPages(t *testing.T) {
	t.Parallel()
	good := sample(t)
	leaf := pagesOf(t, good, 0x02, 2)[0]
	for _, tc := range []struct {
		name       string
		damage     func(b []byte) []byte
		guard      string // "" when Guard accepts the file
		walkRefuse bool
	}{
		{"sound", func(b []byte) []byte { return b }, "", false},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "is truncated", true},
		{"both meta pages overwritten", func(b []byte) []byte {
			clear(b[:2*ps])
			return b
		}, "no valid bbolt meta page", true},
		{"one meta page overwritten", func(b []byte) []byte {
			clear(b[ps : 2*ps])
			return b
		}, "", false},
		{"a leaf page that names another", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[leaf*ps:], uint64(leaf+1))
			return b
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "g.db")
			if err := os.WriteFile(path, tc.damage(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Guard(path)
			if de, ok := Damage(err); tc.guard == "" && err != nil || tc.guard != "" && (!ok || !strings.Contains(de.Problem, tc.guard)) {
				t.Errorf("Guard: got %v, want %q", err, tc.guard)
			}
			db, err := OpenWalked(path, bolt.Options{})
			if err == nil {
				_ = db.Close()
			}
			if _, ok := Damage(err); ok != tc.walkRefuse {
				t.Errorf("OpenWalked: got %v, want refused %v", err, tc.walkRefuse)
			}
		})
	}
}
