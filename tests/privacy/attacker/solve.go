package attacker

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// solver holds the model after presolve: unknowns fixed by the log are
// constants, unknowns that every row and target treats alike are merged,
// and the rest is split into blocks that share no row.
type solver struct {
	rows    []row // over merged unknowns
	targets []*target
	// fixed[v] is the value of original unknown v, or NaN while free.
	fixed []float64
	// merged[v] is the merged unknown of free original unknown v.
	merged  []int
	nFree   int
	truth   []float64 // of each merged unknown; nil without truth
	blockOf []int     // of each merged unknown; -1 when in no row
	blocks  []*block
	lps     int
	cache   map[string][2]float64 // per block and objective: min and max
}

// tolFeas is how far a row may miss its bounds from rounding alone.
const tolFeas = 1e-6

func newSolver(m *model) (*solver, error) {
	s := &solver{fixed: make([]float64, len(m.varTruth)), cache: map[string][2]float64{}}
	for i := range s.fixed {
		s.fixed[i] = math.NaN()
	}
	if m.truth != nil {
		// Every disclosed cell must hold the truth: exact cells their
		// value, bounds around it. A node that breaks this is wrong in a
		// way no range can show.
		for _, r := range m.rows {
			var v float64
			for _, t := range r.terms {
				v += t.coef * m.varTruth[t.v]
			}
			if v < r.lo-tolFeas || v > r.hi+tolFeas {
				return nil, fmt.Errorf("%s: the log says %s but the records hold %g", r.what, bounds(r.lo, r.hi), v)
			}
		}
	}
	rows, err := s.presolve(m.rows)
	if err != nil {
		return nil, err
	}
	s.merge(m, rows)
	s.split()
	return s, nil
}

func bounds(lo, hi float64) string {
	switch {
	case lo == hi:
		return fmt.Sprintf("exactly %g", lo)
	case math.IsInf(hi, 1):
		return fmt.Sprintf("at least %g", lo)
	}
	return fmt.Sprintf("%g..%g", lo, hi)
}

// presolve fixes the unknowns the rows pin on their own (a cell disclosed
// as 0 fixes all its inner cells; a row of one unknown fixes it), folds
// fixed unknowns into the bounds, and drops rows that say nothing.
func (s *solver) presolve(in []row) ([]row, error) {
	rows := slices.Clone(in)
	for changed := true; changed; {
		changed = false
		for i := range rows {
			r := &rows[i]
			r.terms = slices.DeleteFunc(slices.Clone(r.terms), func(t term) bool {
				if f := s.fixed[t.v]; !math.IsNaN(f) {
					r.lo -= t.coef * f
					r.hi -= t.coef * f
					return true
				}
				return false
			})
			if len(r.terms) == 0 {
				if r.lo > tolFeas || r.hi < -tolFeas {
					return nil, fmt.Errorf("%s: the log contradicts itself (what is left must be %s)", r.what, bounds(r.lo, r.hi))
				}
				continue
			}
			positive := !slices.ContainsFunc(r.terms, func(t term) bool { return t.coef < 0 })
			switch {
			case positive && r.hi <= tolFeas:
				if r.hi < -tolFeas {
					return nil, fmt.Errorf("%s: the log contradicts itself (a sum of counts below 0)", r.what)
				}
				for _, t := range r.terms {
					s.fixed[t.v] = 0
				}
				changed = true
			case len(r.terms) == 1 && r.hi-r.lo <= tolFeas:
				v := r.lo / r.terms[0].coef
				if v < -tolFeas {
					return nil, fmt.Errorf("%s: the log contradicts itself (a count below 0)", r.what)
				}
				s.fixed[r.terms[0].v] = max(v, 0)
				changed = true
			}
		}
	}
	// Drop empty rows and rows that non-negativity already implies; merge
	// rows over the same terms.
	var out []row
	seen := map[string]int{}
	for _, r := range rows {
		if len(r.terms) == 0 {
			continue
		}
		positive := !slices.ContainsFunc(r.terms, func(t term) bool { return t.coef < 0 })
		if positive && r.lo <= tolFeas && math.IsInf(r.hi, 1) {
			continue
		}
		key := termsKey(r.terms)
		if i, ok := seen[key]; ok {
			o := &out[i]
			o.lo, o.hi = max(o.lo, r.lo), min(o.hi, r.hi)
			if o.lo > o.hi+tolFeas {
				return nil, fmt.Errorf("%s contradicts %s", r.what, o.what)
			}
			continue
		}
		seen[key] = len(out)
		out = append(out, r)
	}
	return out, nil
}

func termsKey(terms []term) string {
	var b strings.Builder
	for _, t := range terms {
		fmt.Fprintf(&b, "%d:%g,", t.v, t.coef)
	}
	return b.String()
}

// merge replaces unknowns that appear in the same rows and targets with
// the same coefficients by one unknown, their sum: no row or target can
// tell them apart, and a sum of non-negative unknowns is any non-negative
// number. It also moves the fixed unknowns of targets into constants.
func (s *solver) merge(m *model, rows []row) {
	n := len(s.fixed)
	sig := make([][]string, n)
	for i, r := range rows {
		for _, t := range r.terms {
			sig[t.v] = append(sig[t.v], fmt.Sprintf("r%d:%g", i, t.coef))
		}
	}
	for i, t := range m.targets {
		for _, tm := range t.terms {
			if math.IsNaN(s.fixed[tm.v]) {
				sig[tm.v] = append(sig[tm.v], fmt.Sprintf("t%d:%g", i, tm.coef))
			}
		}
	}
	s.merged = make([]int, n)
	ids := map[string]int{}
	for v := range n {
		s.merged[v] = -1
		if !math.IsNaN(s.fixed[v]) || len(sig[v]) == 0 {
			continue
		}
		key := strings.Join(sig[v], ",")
		id, ok := ids[key]
		if !ok {
			id = len(ids)
			ids[key] = id
			if m.truth != nil {
				s.truth = append(s.truth, 0)
			}
		}
		s.merged[v] = id
		if m.truth != nil {
			s.truth[id] += m.varTruth[v]
		}
	}
	s.nFree = len(ids)
	mergeTerms := func(terms []term) []term {
		out := map[int]float64{}
		for _, t := range terms {
			out[s.merged[t.v]] = t.coef // members of a merged unknown share coefficients
		}
		return sortedTerms(out)
	}
	for _, r := range rows {
		r.terms = mergeTerms(r.terms)
		s.rows = append(s.rows, r)
	}
	for _, t := range m.targets {
		var constant float64
		free := t.terms[:0:0]
		for _, tm := range t.terms {
			if f := s.fixed[tm.v]; !math.IsNaN(f) {
				constant += tm.coef * f
			} else {
				free = append(free, tm)
			}
		}
		nt := *t
		nt.terms = mergeTerms(free)
		nt.constant = constant
		s.targets = append(s.targets, &nt)
	}
}

// split groups the rows into blocks that share no unknown.
func (s *solver) split() {
	parent := make([]int, s.nFree)
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	inRow := make([]bool, s.nFree)
	for _, r := range s.rows {
		for _, t := range r.terms {
			inRow[t.v] = true
			a, b := find(r.terms[0].v), find(t.v)
			parent[a] = b
		}
	}
	s.blockOf = make([]int, s.nFree)
	index := map[int]int{}
	for v := range s.nFree {
		s.blockOf[v] = -1
		if !inRow[v] {
			continue
		}
		root := find(v)
		b, ok := index[root]
		if !ok {
			b = len(s.blocks)
			index[root] = b
			s.blocks = append(s.blocks, &block{local: map[int]int{}})
		}
		s.blockOf[v] = b
		blk := s.blocks[b]
		blk.local[v] = len(blk.vars)
		blk.vars = append(blk.vars, v)
	}
	for _, r := range s.rows {
		blk := s.blocks[s.blockOf[r.terms[0].v]]
		blk.rows = append(blk.rows, r)
	}
}

// rangeOf is the feasible range of t: the sum of its constant, of its
// unknowns in no row (any non-negative value) and of its part in each block
// (each block's own LP). With the truth known it stops as soon as the range
// is known to hold two integers, and returns a range that says so.
func (s *solver) rangeOf(t *target) (lo, hi float64, err error) {
	lo, hi = t.constant, t.constant
	parts := map[int][]term{}
	for _, tm := range t.terms {
		b := s.blockOf[tm.v]
		if b < 0 {
			if tm.coef > 0 {
				hi = math.Inf(1)
			} else {
				lo = math.Inf(-1)
			}
			continue
		}
		parts[b] = append(parts[b], tm)
	}
	if math.IsInf(hi, 1) || math.IsInf(lo, -1) {
		return lo, hi, nil
	}
	order := sortedKeys(mapKeys(parts))
	if t.known && s.truth != nil {
		// A target that is a combination of exact cells is pinned to
		// the truth's value, and linear algebra shows it without an LP.
		constant := true
		for _, b := range order {
			if !s.constant(b, parts[b]) {
				constant = false
				break
			}
		}
		if constant {
			return t.truth, t.truth, nil
		}
	}
	if t.known {
		// The truth is feasible: the range holds two integers as soon as
		// the maxima (or minima) move one away from it.
		for _, b := range order {
			_, mx, err := s.optimize(b, parts[b], false, true)
			if err != nil {
				return 0, 0, err
			}
			hi += mx
		}
		if hi >= t.truth+1-tolRound {
			return t.truth, hi, nil
		}
		for _, b := range order {
			mn, _, err := s.optimize(b, parts[b], true, false)
			if err != nil {
				return 0, 0, err
			}
			lo += mn
		}
		return lo, hi, nil
	}
	for _, b := range order {
		mn, mx, err := s.optimize(b, parts[b], true, true)
		if err != nil {
			return 0, 0, err
		}
		lo, hi = lo+mn, hi+mx
	}
	return lo, hi, nil
}

// confirm is the range of t solved again, every block and both ends, on
// the attacker's own tableau instead of lp.Simplex, with no shortcut: a
// finding stands only when two solvers agree on it.
func (s *solver) confirm(t *target) (lo, hi float64, err error) {
	lo, hi = t.constant, t.constant
	parts := map[int][]term{}
	for _, tm := range t.terms {
		b := s.blockOf[tm.v]
		if b < 0 {
			return math.Inf(-1), math.Inf(1), nil
		}
		parts[b] = append(parts[b], tm)
	}
	for _, b := range sortedKeys(mapKeys(parts)) {
		blk := s.blocks[b]
		if err := blk.build(); err != nil {
			return 0, 0, err
		}
		_, cols := blk.a.Dims()
		c, neg := make([]float64, cols), make([]float64, cols)
		for _, tm := range parts[b] {
			c[blk.local[tm.v]], neg[blk.local[tm.v]] = tm.coef, -tm.coef
		}
		mn, err := primal(blk.a, blk.b, c, blk.basis)
		if err != nil {
			return 0, 0, fmt.Errorf("tableau on a block of %d rows: %w", len(blk.b), err)
		}
		mx, err := primal(blk.a, blk.b, neg, blk.basis)
		if err != nil {
			return 0, 0, fmt.Errorf("tableau on a block of %d rows: %w", len(blk.b), err)
		}
		s.lps += 2
		lo, hi = lo+mn, hi-mx
	}
	return lo, hi, nil
}

func mapKeys[K comparable, V any](m map[K]V) map[K]bool {
	out := make(map[K]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// constant reports whether the terms (over block b) are a combination of
// the block's exact rows.
func (s *solver) constant(b int, terms []term) bool {
	blk := s.blocks[b]
	if blk.screen == nil {
		blk.screen = newScreen(blk)
	}
	c := make([]float64, len(blk.vars))
	for _, t := range terms {
		c[blk.local[t.v]] = t.coef
	}
	return blk.screen.constant(c)
}

// optimize is the minimum and/or maximum of the terms over block b.
func (s *solver) optimize(b int, terms []term, wantMin, wantMax bool) (mn, mx float64, err error) {
	key := fmt.Sprintf("%d|%s", b, termsKey(terms))
	got, ok := s.cache[key]
	if !ok {
		got = [2]float64{math.NaN(), math.NaN()}
	}
	blk := s.blocks[b]
	c := make([]float64, len(blk.vars))
	for _, t := range terms {
		c[blk.local[t.v]] = t.coef
	}
	if wantMin && math.IsNaN(got[0]) {
		if got[0], err = blk.minimize(c); err != nil {
			return 0, 0, err
		}
		s.lps++
	}
	if wantMax && math.IsNaN(got[1]) {
		neg := make([]float64, len(c))
		for i, v := range c {
			neg[i] = -v
		}
		var m float64
		if m, err = blk.minimize(neg); err != nil {
			return 0, 0, err
		}
		got[1] = -m
		s.lps++
	}
	s.cache[key] = got
	return got[0], got[1], nil
}

// block is one independent part of the problem, as an LP in gonum's
// standard form: minimize cᵀx subject to Ax = b, x >= 0.
type block struct {
	vars  []int       // merged unknowns
	local map[int]int // merged unknown -> column
	rows  []row

	built bool
	err   error
	a     *mat.Dense
	b     []float64
	basis []int // a feasible basis, found once and reused by every LP

	screen *screen // built on first use

	fallbacks int // LPs that lp.Simplex failed and primal solved
}

// build writes the block in standard form: each equality row once if
// independent of those before (Simplex wants full row rank), each bound
// with a slack column of its own (a·x − s = lo, a·x + s = hi). Then it
// finds a feasible basis by phase I.
func (blk *block) build() error {
	if blk.built {
		return blk.err
	}
	blk.built = true
	n := len(blk.vars)
	dense := func(r row) []float64 {
		v := make([]float64, n)
		for _, t := range r.terms {
			v[blk.local[t.v]] = t.coef
		}
		return v
	}
	var eq, ineq [][]float64
	var beq, bineq []float64
	var slackSign []float64
	var ech echelon
	for _, r := range blk.rows {
		if r.hi-r.lo <= tolFeas {
			v := dense(r)
			ok, consistent := ech.add(v, r.lo)
			if !ok {
				if !consistent {
					blk.err = fmt.Errorf("%s contradicts the rows before it", r.what)
					return blk.err
				}
				continue
			}
			eq, beq = append(eq, v), append(beq, r.lo)
			continue
		}
		if r.lo > tolFeas || slices.ContainsFunc(r.terms, func(t term) bool { return t.coef < 0 }) {
			ineq, bineq, slackSign = append(ineq, dense(r)), append(bineq, r.lo), append(slackSign, -1)
		}
		if !math.IsInf(r.hi, 1) {
			ineq, bineq, slackSign = append(ineq, dense(r)), append(bineq, r.hi), append(slackSign, 1)
		}
	}
	rows, cols := len(eq)+len(ineq), n+len(ineq)
	a := mat.NewDense(rows, cols, nil)
	b := make([]float64, rows)
	for i, v := range eq {
		a.SetRow(i, append(v, make([]float64, len(ineq))...))
		b[i] = beq[i]
	}
	for j, v := range ineq {
		i := len(eq) + j
		a.SetRow(i, append(v, make([]float64, len(ineq))...))
		a.Set(i, n+j, slackSign[j])
		b[i] = bineq[j]
	}
	blk.a = a
	blk.basis, blk.err = phaseOne(a, b)
	if blk.err != nil {
		return blk.err
	}
	// Degenerate basic columns sit at 0, which rounding can put a hair
	// below it, and lp.Simplex refuses a basis with any value below
	// -1e-13. Raising b by the basis columns times basisLift puts every
	// basic value at basisLift or above: a change of the problem far
	// below the tolerance the ranges are rounded with.
	for i := range b {
		for _, j := range blk.basis {
			b[i] += basisLift * a.At(i, j)
		}
	}
	blk.b = b
	return nil
}

// basisLift is how far the feasible basis's values are lifted above 0.
const basisLift = 1e-9

// minimize is the minimum of cᵀx over the block (c over its unknowns).
func (blk *block) minimize(c []float64) (float64, error) {
	if err := blk.build(); err != nil {
		return 0, err
	}
	_, cols := blk.a.Dims()
	full := make([]float64, cols)
	copy(full, c)
	f, err := simplex(full, blk.a, blk.b, blk.basis)
	if err != nil && !errors.Is(err, lp.ErrUnbounded) {
		// lp.Simplex gave up (a basis its LU finds singular or a hair
		// infeasible, ErrBland, an ill-conditioned step): solve the same
		// LP again on a tableau of our own from the same basis. gonum's
		// cold start is no fallback: its phase I builds an artificial
		// column that makes the basis singular on these logs.
		var err2 error
		if f, err2 = primal(blk.a, blk.b, full, blk.basis); err2 != nil {
			return 0, fmt.Errorf("simplex on a block of %d rows: %w; and on a tableau of its own: %w", len(blk.b), err, err2)
		}
		blk.fallbacks++
		err = nil
		if math.IsInf(f, -1) {
			err = lp.ErrUnbounded
		}
	}
	switch {
	case errors.Is(err, lp.ErrUnbounded):
		return math.Inf(-1), nil
	case err != nil:
		return 0, fmt.Errorf("simplex on a block of %d rows: %w", len(blk.b), err)
	}
	return f, nil
}

// simplex is lp.Simplex with its panics (a basis it finds singular or
// infeasible, shapes it refuses) returned as errors.
func simplex(c []float64, a mat.Matrix, b []float64, basis []int) (f float64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("lp.Simplex panicked: %v", p)
		}
	}()
	f, _, err = lp.Simplex(c, a, b, 1e-10, basis)
	return f, err
}

// echelon is a growing set of independent vectors in echelon form, by
// Gaussian elimination with the largest entry as pivot.
type echelon struct {
	vecs  [][]float64
	rhs   []float64
	pivot []int
}

// add reduces v (with right-hand side r) by the vectors so far. It keeps v
// and reports true when v is independent of them; otherwise it reports
// whether r is consistent with them.
func (e *echelon) add(v []float64, r float64) (independent, consistent bool) {
	v = slices.Clone(v)
	for i, p := range e.pivot {
		if f := v[p]; f != 0 {
			u := e.vecs[i]
			for j := range v {
				if u[j] != 0 {
					v[j] -= f * u[j]
				}
			}
			r -= f * e.rhs[i]
		}
	}
	best := -1
	for j, x := range v {
		if math.Abs(x) > 1e-9 && (best < 0 || math.Abs(x) > math.Abs(v[best])) {
			best = j
		}
	}
	if best < 0 {
		return false, math.Abs(r) <= tolFeas
	}
	p := v[best]
	for j := range v {
		v[j] /= p
	}
	e.vecs, e.rhs, e.pivot = append(e.vecs, v), append(e.rhs, r/p), append(e.pivot, best)
	return true, true
}
