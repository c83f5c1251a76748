package main

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/records"
)

// duplicatesPerPass bounds the record_ids one pass of listDuplicates holds:
// a pass keeps a 64-bit hash and a position per id of its share, so memory
// stays near 32 MB whatever the size of the inputs.
const duplicatesPerPass = 1 << 20

// dupAt is one occurrence of a duplicated record_id.
type dupAt struct {
	file  int // index into the inputs
	line  int
	order uint64 // position among all records of the inputs
}

// duplicate is a record_id sent again after its first occurrence.
type duplicate struct {
	id          string
	at, firstAt dupAt
}

// listDuplicates reads the regular files of inputs again after the node
// refused a stream for a duplicate record_id, and returns the first limit
// duplicates in file order and how many there are in all. The node stops at
// the first; the CLI lists them as it lists invalid lines. Memory stays
// flat: the ids are split by hash into passes of at most duplicatesPerPass
// records each, and a candidate (a hash seen before) is confirmed by its
// id in a last pass, so a hash collision is never reported. ok is false
// when an input cannot be read again (stdin).
func listDuplicates(inputs []input, format string, limit int) (dups []duplicate, total int, ok bool) {
	var records uint64
	for _, in := range inputs {
		if !in.regular {
			return nil, 0, false
		}
		n, ok := scanInput(in, format, func(uint64, string, int) {})
		if !ok {
			return nil, 0, false
		}
		records += n
	}
	passes := max(1, (records+duplicatesPerPass-1)/duplicatesPerPass)
	seed := maphash.MakeSeed()
	// candidates: order of a later occurrence whose hash was seen before.
	candidates := map[uint64]bool{}
	for pass := range passes {
		seen := map[uint64]struct{}{}
		var order uint64
		for _, in := range inputs {
			scanInput(in, format, func(_ uint64, id string, _ int) {
				defer func() { order++ }()
				h := maphash.String(seed, id)
				if h%passes != pass {
					return
				}
				if _, dup := seen[h]; dup {
					candidates[order] = true
					return
				}
				seen[h] = struct{}{}
			})
		}
	}
	if len(candidates) == 0 {
		return nil, 0, true
	}
	// Confirm by id: a candidate whose id occurs before it is a duplicate;
	// one whose hash only collided is that id's first occurrence.
	first := map[string]dupAt{}
	var order uint64
	for _, in := range inputs {
		scanInput(in, format, func(_ uint64, id string, _ int) {
			if candidates[order] {
				first[id] = dupAt{} // line 0: not met yet
			}
			order++
		})
	}
	order = 0
	for i, in := range inputs {
		scanInput(in, format, func(_ uint64, id string, line int) {
			defer func() { order++ }()
			f, wanted := first[id]
			at := dupAt{file: i, line: line, order: order}
			switch {
			case !wanted:
			case f.line == 0:
				first[id] = at
			default:
				total++
				if len(dups) < limit {
					dups = append(dups, duplicate{id: id, at: at, firstAt: f})
				}
			}
		})
	}
	return dups, total, true
}

// scanInput calls fn with the index, record_id and line of every valid
// record of the regular file in, and returns how many there were; ok is
// false when the file cannot be read.
func scanInput(in input, format string, fn func(i uint64, id string, line int)) (n uint64, ok bool) {
	rr, closer, err := openRecords(in.name, format, nil, nil)
	if err != nil {
		return 0, false
	}
	defer closer.Close()
	lastBad := 0
	for {
		rec, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return n, true
		}
		var lineErr *records.LineError
		if errors.As(err, &lineErr) {
			if lineErr.Line <= lastBad {
				return n, true // the rest cannot be read
			}
			lastBad = lineErr.Line
			continue
		}
		if err != nil {
			return n, false
		}
		fn(n, rec.GetRecordId(), rr.Line())
		n++
	}
}

// describeDuplicates words the duplicates listDuplicates found as ingest
// words invalid lines.
func describeDuplicates(inputs []input, dups []duplicate, total int) error {
	var msg string
	for i, d := range dups {
		if i > 0 {
			msg += "\n"
		}
		msg += fmt.Sprintf("%s:%d: record_id %s was already sent in this stream, at %s:%d", inputs[d.at.file].source, d.at.line, echo.Quote(d.id), inputs[d.firstAt.file].source, d.firstAt.line)
	}
	if total > len(dups) {
		msg += fmt.Sprintf("\n... and %d more", total-len(dups))
	}
	return fmt.Errorf("%s\n%d duplicate record_id(s) (send each record once; a later ingest may correct it); the node refused the stream and nothing was stored. Fix them and ingest again", msg, total)
}
