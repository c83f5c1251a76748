package attacker

import (
	"math"
	"slices"
)

// screen settles, without an LP, the targets that are pinned by linear
// algebra alone: a target that is a combination of exact cells (equality
// rows) has one value on the whole feasible set, the truth's. Most
// differencing attacks are of this kind; bounds-based ones go to the LP.
type screen struct {
	// eq is an orthonormal basis of the equality rows: a target in their
	// span is constant on the whole feasible set.
	eq [][]float64
}

func newScreen(blk *block) *screen {
	s := &screen{}
	n := len(blk.vars)
	for _, r := range blk.rows {
		if r.hi-r.lo > tolFeas {
			continue
		}
		a := make([]float64, n)
		for _, t := range r.terms {
			a[blk.local[t.v]] = t.coef
		}
		s.eq = orthoAdd(s.eq, a)
	}
	return s
}

// orthoAdd adds v, orthogonalized (twice, for stability) against q, when
// it is not in q's span.
func orthoAdd(q [][]float64, v []float64) [][]float64 {
	v = slices.Clone(v)
	for range 2 {
		for _, u := range q {
			f := dot(u, v)
			if f == 0 {
				continue
			}
			for j := range v {
				v[j] -= f * u[j]
			}
		}
	}
	norm := math.Sqrt(dot(v, v))
	if norm < 1e-8 {
		return q
	}
	for j := range v {
		v[j] /= norm
	}
	return append(q, v)
}

func dot(a, b []float64) float64 {
	var s float64
	for i, x := range a {
		if x != 0 {
			s += x * b[i]
		}
	}
	return s
}

// constant reports whether c·x is the same at every feasible point: c is a
// combination of equality rows.
func (s *screen) constant(c []float64) bool {
	r := slices.Clone(c)
	for range 2 {
		for _, u := range s.eq {
			if f := dot(u, r); f != 0 {
				for j := range r {
					r[j] -= f * u[j]
				}
			}
		}
	}
	return math.Sqrt(dot(r, r)) < 1e-7
}
