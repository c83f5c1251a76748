package records

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// byteRepeater is an endless (or n-byte) run of one byte, so that a test
// can feed a reader hundreds of megabytes without holding them.
type byteRepeater struct {
	b byte
	n int64
}

func (r *byteRepeater) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = r.b
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// allocatedWhile returns the bytes fn allocated.
func allocatedWhile(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const header = "record_id,metric,date,offence,channel,victim_age,quantity\n"

func TestCSVReaderRefusesAHugeLineWithoutHoldingIt(t *testing.T) {
	const huge = 200 << 20
	good := "FR-1,arrests,2020-01-02,,,,1\n"
	for _, tc := range []struct {
		name string
		in   io.Reader
		want string
	}{
		{"a 200 MB record line", io.MultiReader(strings.NewReader(header+good+"FR-2,"), &byteRepeater{b: 'x', n: huge}, strings.NewReader("\n"+good)),
			"fr.csv:3: line is longer than 65536 bytes"},
		{"a 200 MB header", io.MultiReader(strings.NewReader("record_id,"), &byteRepeater{b: 'x', n: huge}, strings.NewReader("\n"+good)),
			"fr.csv:1: line is longer than 65536 bytes"},
		{"a quote that never closes", io.MultiReader(strings.NewReader(header+good+good+`FR-3,"arrests`), &byteRepeater{b: '\n', n: huge}),
			"fr.csv:4: the quoted field that starts on this line is not closed within 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			alloc := allocatedWhile(func() {
				r := NewCSVReader(tc.in, "fr.csv")
				r.SetToday(testToday)
				for i := 0; i < 10; i++ {
					_, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						if len(errs) > 0 && err == errs[len(errs)-1] {
							break // sticky: the rest cannot be read
						}
						errs = append(errs, err)
					}
				}
			})
			if alloc > 16<<20 {
				t.Errorf("allocated %d MB, want under 16", alloc>>20)
			}
			if len(errs) != 1 {
				t.Fatalf("errors: got %d (%v), want 1", len(errs), errs)
			}
			var le *LineError
			if !errors.As(errs[0], &le) {
				t.Fatalf("got %T, want a *LineError", errs[0])
			}
			if msg := errs[0].Error(); !strings.HasPrefix(msg, tc.want) || len(msg) > 1024 {
				t.Errorf("error (%d bytes): got %.300q, want one under 1 KiB starting %q", len(msg), msg, tc.want)
			}
		})
	}
}

func TestCSVReaderNamesTheLineAnUnclosedQuoteOpensOn(t *testing.T) {
	t.Parallel()
	in := header + "FR-1,arrests,2020-01-02,,,,1\n" + "FR-2,\"arrests,2020-01-02,,,,1\n" + strings.Repeat("FR-3,arrests,2020-01-02,,,,1\n", 50)
	_, errs := readAll(t, newCSV(in))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "fr.csv:3: ") || !strings.Contains(errs[0].Error(), "never closed") {
		t.Errorf("errors: got %v, want one at fr.csv:3 saying the quote is never closed", errs)
	}
}
