package node

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
)

// Secondary suppression by Gaussian elimination, after Statistics Norway's
// GaussSuppression (R package SSBtools/GaussSuppression): candidate cells are
// taken in priority order, and a candidate is published only if, with it, no
// protected cell lies in the linear span of the published ones. The
// arithmetic is exact, modulo the prime 2^61-1: a vector is in a span over
// the rationals exactly when it is modulo the prime, unless the prime divides
// a minor of the 0/1 cell matrix, and minors of such matrices are far
// smaller than 2^61.

// modulus is the Mersenne prime 2^61-1.
const modulus = 1<<61 - 1

func mulMod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a*b = hi*2^64 + lo; 2^64 = 8 (mod 2^61-1), and 2^61 = 1.
	r := (lo & modulus) + (lo >> 61) + (hi << 3)
	for r >= modulus {
		r -= modulus
	}
	return r
}

func subMod(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + modulus - b
}

// invMod is a^(p-2) mod p, the inverse of a != 0.
func invMod(a uint64) uint64 {
	r, e := uint64(1), uint64(modulus-2)
	for e > 0 {
		if e&1 == 1 {
			r = mulMod(r, a)
		}
		a = mulMod(a, a)
		e >>= 1
	}
	return r
}

// entry is one non-zero coefficient of a sparse vector.
type entry struct {
	col int32
	val uint64
}

// vec is a sparse vector, sorted by column.
type vec []entry

// span is a basis in echelon form: each row's first column is its pivot,
// with coefficient 1, and no other row has that column as pivot.
type span struct {
	cols  int
	pivot map[int32]vec // pivot column -> row
	dense []uint64      // scratch, zero between calls
}

func newSpan(cols int) *span {
	return &span{cols: cols, pivot: map[int32]vec{}, dense: make([]uint64, cols)}
}

// reduce returns v minus the combination of basis rows that clears every
// pivot column of v: zero exactly when v is in the span.
func (s *span) reduce(v vec) vec {
	if len(s.pivot) == 0 {
		return slices.Clone(v)
	}
	lo, hi := int32(s.cols), int32(-1)
	for _, e := range v {
		s.dense[e.col] = e.val
		lo, hi = min(lo, e.col), max(hi, e.col)
	}
	for c := lo; c >= 0 && c <= hi; c++ {
		f := s.dense[c]
		if f == 0 {
			continue
		}
		row, ok := s.pivot[c]
		if !ok {
			continue
		}
		for _, e := range row {
			s.dense[e.col] = subMod(s.dense[e.col], mulMod(f, e.val))
			hi = max(hi, e.col)
		}
	}
	var out vec
	for c := lo; c >= 0 && c <= hi; c++ {
		if s.dense[c] != 0 {
			out = append(out, entry{c, s.dense[c]})
			s.dense[c] = 0
		}
	}
	return out
}

// add puts a reduced, non-zero vector into the basis, scaled so that its
// pivot is 1, and returns it.
func (s *span) add(r vec) vec {
	inv := invMod(r[0].val)
	row := make(vec, len(r))
	for i, e := range r {
		row[i] = entry{e.col, mulMod(e.val, inv)}
	}
	s.pivot[row[0].col] = row
	return row
}

// eliminate clears the pivot column of row from v, which is reduced against
// the basis before row was added: the result is reduced against the basis
// with row.
func eliminate(v, row vec) vec {
	p := row[0].col
	i, ok := slices.BinarySearchFunc(v, p, func(e entry, c int32) int { return int(e.col - c) })
	if !ok {
		return v
	}
	f := v[i].val
	out := make(vec, 0, len(v)+len(row))
	a, b := 0, 0
	for a < len(v) || b < len(row) {
		switch {
		case b == len(row) || (a < len(v) && v[a].col < row[b].col):
			out = append(out, v[a])
			a++
		case a == len(v) || row[b].col < v[a].col:
			out = append(out, entry{row[b].col, subMod(0, mulMod(f, row[b].val))})
			b++
		default:
			if x := subMod(v[a].val, mulMod(f, row[b].val)); x != 0 {
				out = append(out, entry{v[a].col, x})
			}
			a++
			b++
		}
	}
	return out
}

// candidate is a cell that may be published, as a row over the columns.
type candidate struct {
	row vec
	// forced cells are published whatever they reveal: cells an earlier
	// release published (the attacker has them anyway).
	forced bool
	// barred cells are never published: primary cells, and cells an
	// earlier release suppressed, unless the release is protected against
	// every earlier one (release_history.go).
	barred bool
}

// suppress decides, in the order given, which candidates are published so
// that no protected row lies in the span of the published ones. It returns
// published[i] for each candidate and the protected rows that were already
// in the span of the forced ones (a leak the caller must not make worse; it
// cannot be undone).
func suppress(cols int, cands []candidate, protected []vec) (published []bool, exposed []int) {
	s := newSpan(cols)
	prot := make([]vec, len(protected))
	for i, p := range protected {
		prot[i] = slices.Clone(p)
	}
	published = make([]bool, len(cands))
	for i, c := range cands {
		if c.barred {
			continue
		}
		r := s.reduce(c.row)
		if len(r) == 0 {
			published[i] = true // nothing new: already derivable
			continue
		}
		p := r[0].col
		if !c.forced {
			safe := true
			for _, pr := range prot {
				if len(pr) == 0 {
					continue // exposed by forced cells
				}
				if _, hit := slices.BinarySearchFunc(pr, p, func(e entry, c int32) int { return int(e.col - c) }); !hit {
					continue
				}
				if len(eliminate(pr, s.scaled(r))) == 0 {
					safe = false
					break
				}
			}
			if !safe {
				continue
			}
		}
		row := s.add(r)
		for j, pr := range prot {
			if len(pr) > 0 {
				prot[j] = eliminate(pr, row)
			}
		}
		published[i] = true
	}
	for j, pr := range prot {
		if len(pr) == 0 {
			exposed = append(exposed, j)
		}
	}
	return published, exposed
}

// scaled returns r with its first coefficient 1, without adding it.
func (s *span) scaled(r vec) vec {
	inv := invMod(r[0].val)
	out := make(vec, len(r))
	for i, e := range r {
		out[i] = entry{e.col, mulMod(e.val, inv)}
	}
	return out
}

// signature is the row as bytes, to tell equal rows apart from others.
func (v vec) signature() string {
	b := make([]byte, 0, 12*len(v))
	for _, e := range v {
		b = binary.BigEndian.AppendUint32(b, uint32(e.col))
		b = binary.BigEndian.AppendUint64(b, e.val)
	}
	return string(b)
}

// merged sorts r by column and adds up the entries of each column (mod
// modulus), dropping those that cancel.
func merged(r vec) vec {
	slices.SortFunc(r, func(a, b entry) int { return cmp.Compare(a.col, b.col) })
	out := r[:0]
	for _, e := range r {
		if n := len(out); n > 0 && out[n-1].col == e.col {
			if out[n-1].val = (out[n-1].val + e.val) % modulus; out[n-1].val == 0 {
				out = out[:n-1]
			}
			continue
		}
		out = append(out, e)
	}
	return out
}
