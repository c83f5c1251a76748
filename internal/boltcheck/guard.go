package boltcheck

import (
	"errors"
	"fmt"
	"os"
	"unicode/utf8"
)

// ErrEmpty is Guard's error for an empty file, which bbolt would initialise
// rather than read.
var ErrEmpty = errors.New("the file is empty")

// DamageError is a file Guard or OpenWalked refused: Problem completes a
// sentence about the file ("is truncated: ...", "is damaged: page 43, ...").
type DamageError struct{ Problem string }

func (e *DamageError) Error() string { return "the file " + e.Problem }

// NotDataFileError is a path Guard or OpenWalked refused because it never
// was a data file: a directory, or a file of text. No backup is needed for
// it; the path was likely mistyped.
type NotDataFileError struct {
	Path string
	// What completes "Path is ...": "a directory", "a text file ...".
	What string
}

func (e *NotDataFileError) Error() string {
	return e.Path + " is " + e.What + ", not a fedreport data file; give --data the path of the data file (.db)"
}

// Damage returns err's *DamageError, if it is one.
func Damage(err error) (*DamageError, bool) {
	var de *DamageError
	return de, errors.As(err, &de)
}

// Guard is the check a node and a coordinator make of their existing file
// before bolt.Open. bbolt trusts what it reads: given a truncated file or a
// meta page pointing outside the file it faults or panics instead of
// returning an error (etcd-io/bbolt#105, #447), and the process dies with no
// message an operator can act on. Guard reads the two meta pages with plain
// reads and refuses the file unless one of them is valid (magic and
// checksum) and the file holds every page that meta page counts, with the
// root bucket and the freelist among them. It reads two small pieces of the
// file whatever its size; damage inside the pages is for `fedreport verify`
// (OpenWalked). A missing file gives an fs.ErrNotExist error, an empty one
// ErrEmpty.
func Guard(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = inspect(f)
	return err
}

// looksLikeText reports whether b, the start of a file, is text: UTF-8
// without control characters other than tab and line ends. A bbolt file
// never starts so: its meta page header (page id 0, flags, overflow count)
// holds zero bytes.
func looksLikeText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			return len(b) < utf8.UTFMax && !utf8.FullRune(b) // a rune cut off by the end of b
		}
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return false
		}
		b = b[size:]
	}
	return true
}

// inspect is Guard on an open file; it returns the meta page bbolt would
// open the file with.
func inspect(f *os.File) (Meta, error) {
	st, err := f.Stat()
	if err != nil {
		return Meta{}, err
	}
	if st.IsDir() {
		return Meta{}, &NotDataFileError{Path: f.Name(), What: "a directory"}
	}
	if st.Size() == 0 {
		return Meta{}, ErrEmpty
	}
	m, err := ReadMeta(f)
	if err != nil {
		head := make([]byte, 64)
		n, _ := f.ReadAt(head, 0)
		if looksLikeText(head[:n]) {
			return m, &NotDataFileError{Path: f.Name(), What: "a text file (a CSV or JSON Lines export? `fedreport ingest` loads those into a node)"}
		}
		return m, &DamageError{Problem: "has " + err.Error()}
	}
	if m.PageSize < minPageSize || m.HWM < 3 {
		return m, &DamageError{Problem: fmt.Sprintf("has a meta page of page size %d and %d pages: not a bbolt file", m.PageSize, m.HWM)}
	}
	if need := m.HWM * uint64(m.PageSize); uint64(st.Size()) < need {
		return m, &DamageError{Problem: fmt.Sprintf("is truncated: its pages reach byte %d but the file holds %d", need, st.Size())}
	}
	if m.Root < 2 || m.Root >= m.HWM || (m.Freelist != NoFreelist && (m.Freelist < 2 || m.Freelist >= m.HWM)) {
		return m, &DamageError{Problem: fmt.Sprintf("has a meta page whose root page %d or freelist page %d is outside its pages 2-%d", m.Root, m.Freelist, m.HWM-1)}
	}
	return m, nil
}
