package attacker

import (
	"math"
	"slices"
)

// screen proves cheaply, without an LP, that a target is not pinned. The
// ground truth is a feasible point; if some feasible path from it moves the
// target by at least 1, the target's range holds two integers. The path is
// a few steps of gradient projection: move along the target's direction
// projected onto what keeps every tight constraint tight, until a new
// constraint blocks, then add it to the tight ones and go on. Failing to
// find such a path proves nothing: the LP decides then.
type screen struct {
	x0   []float64 // the truth, per column of the block
	rows []screenRow
	// eq is an orthonormal basis of the equality rows: a target in their
	// span is constant on the whole feasible set.
	eq [][]float64
}

type screenRow struct {
	a      []float64
	lo, hi float64
	val    float64 // at x0
}

// Tolerances of the screen: an entry below tolZero is zero; a step is
// enough when it moves the target by 1 - tolRound.
const tolZero = 1e-10

// maxSteps bounds the path's steps per direction.
const maxSteps = 40

func newScreen(blk *block, truth []float64) *screen {
	n := len(blk.vars)
	s := &screen{x0: make([]float64, n)}
	for i, v := range blk.vars {
		s.x0[i] = truth[v]
	}
	for _, r := range blk.rows {
		sr := screenRow{a: make([]float64, n), lo: r.lo, hi: r.hi}
		for _, t := range r.terms {
			sr.a[blk.local[t.v]] = t.coef
		}
		for j, c := range sr.a {
			sr.val += c * s.x0[j]
		}
		s.rows = append(s.rows, sr)
		if r.hi-r.lo <= tolFeas {
			s.eq = orthoAdd(s.eq, sr.a)
		}
	}
	s.eq = slices.Clip(s.eq)
	return s
}

func unit(n, j int) []float64 {
	e := make([]float64, n)
	e[j] = 1
	return e
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

// moves reports whether a feasible path from the truth moves c·x by at
// least 1, upwards (sign 1) or downwards (sign -1). Each step goes along
// the target's direction projected so that equality rows stay exact, and
// so that no unknown at 0 and no row at a bound is pushed across it.
func (s *screen) moves(c []float64, sign float64) bool {
	g := make([]float64, len(c))
	for j := range c {
		g[j] = sign * c[j]
	}
	x := slices.Clone(s.x0)
	vals := make([]float64, len(s.rows))
	for i, r := range s.rows {
		vals[i] = r.val
	}
	var gain float64
	for range maxSteps {
		d, ad := s.direction(g, x, vals)
		rate := dot(g, d)
		if rate < tolZero {
			return false
		}
		step := math.Inf(1)
		for j, dj := range d {
			if dj < -tolZero {
				step = min(step, max(x[j], 0)/-dj)
			}
		}
		for i, r := range s.rows {
			switch {
			case ad[i] > tolZero && !math.IsInf(r.hi, 1):
				step = min(step, max(r.hi-vals[i], 0)/ad[i])
			case ad[i] < -tolZero:
				step = min(step, max(vals[i]-r.lo, 0)/-ad[i])
			}
		}
		if math.IsInf(step, 1) {
			return true
		}
		gain += step * rate
		if gain >= 1-tolRound {
			return true
		}
		for j := range x {
			x[j] += step * d[j]
		}
		for i := range vals {
			vals[i] += step * ad[i]
		}
	}
	return false
}

// direction projects g so that it keeps the equality rows and pushes no
// unknown at 0 below it and no row at a bound across it: constraints that
// the projection would violate join the projection's, until none is left.
// It returns the direction and its effect on each row.
func (s *screen) direction(g, x, vals []float64) ([]float64, []float64) {
	n := len(g)
	q := s.eq
	held := make([]bool, n+len(s.rows))
	ad := make([]float64, len(s.rows))
	for {
		d := slices.Clone(g)
		for _, u := range q {
			if f := dot(u, d); f != 0 {
				for j := range d {
					d[j] -= f * u[j]
				}
			}
		}
		added := false
		for j, dj := range d {
			if !held[j] && dj < -tolZero && x[j] <= tolFeas {
				held[j], added = true, true
				q = orthoAdd(q, unit(n, j))
			}
		}
		for i, r := range s.rows {
			ad[i] = dot(r.a, d)
			if held[n+i] {
				continue
			}
			if (ad[i] < -tolZero && vals[i] <= r.lo+tolFeas) || (ad[i] > tolZero && vals[i] >= r.hi-tolFeas) {
				held[n+i], added = true, true
				q = orthoAdd(q, r.a)
			}
		}
		if !added {
			return d, ad
		}
	}
}
