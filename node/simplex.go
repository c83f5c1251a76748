package node

import (
	"errors"
	"math"
)

// A small dense simplex for the release audit (release_audit.go). The LPs
// it solves are small (tens to a few hundred variables once the audit has
// taken out what the published cells determine), their coefficients are
// ±1 and their right-hand sides integers, so a textbook two-phase tableau
// with Bland's rule against cycling is enough, and easier to follow than
// bending gonum's lp.Simplex to them (it needs full row rank, no more rows
// than columns and an initial basis of its own, and panics otherwise).

// lpTerm is coef times variable v.
type lpTerm struct {
	v    int
	coef float64
}

// lpRow is the constraint lo ≤ Σ terms ≤ hi; lo == hi for an equality,
// hi = +Inf when there is no upper bound. Every variable is ≥ 0.
type lpRow struct {
	terms  []lpTerm
	lo, hi float64
}

// Tolerances: coefficients are ±1 and values integers, so anything this
// small is rounding.
const (
	lpEps     = 1e-9
	lpFeasTol = 1e-7
	lpMaxIter = 50000
)

var (
	errLPInfeasible = errors.New("lp: infeasible")
	errLPIterations = errors.New("lp: iteration limit")
)

// simplex is a feasible basis of an LP in standard form (Ax = b, x ≥ 0,
// b ≥ 0), as a dense tableau, ready to optimize one objective after
// another over the original variables (phase I is paid once).
type simplex struct {
	nv   int // the LP's own variables: columns 0..nv-1
	n    int // structural columns: variables, then slacks
	m    int // rows of the tableau (redundant rows dropped)
	rows [][]float64
	// Columns n..n+M-1 are the artificial columns of the M standard rows
	// (never re-entered after phase I; their reduced costs give the row
	// duals), and column n+M holds the right-hand side.
	width int
	basis []int
	// origin[i] is the lpRow of standard row i (a range row gives two).
	origin []int
	// obj is the objective row: reduced costs and, at width-1, minus the
	// objective's value.
	obj []float64
	nz  []int // scratch of pivot
}

// newSimplex puts rows into standard form and finds a feasible basis
// (phase I: one artificial per row, minimize their sum).
func newSimplex(nv int, rows []lpRow) (*simplex, error) {
	type std struct {
		terms []lpTerm
		slack float64 // coefficient of the row's own slack, 0 for none
		rhs   float64
		orig  int
	}
	var srows []std
	nslack := 0
	for i, r := range rows {
		switch {
		case r.lo == r.hi:
			srows = append(srows, std{r.terms, 0, r.lo, i})
		default:
			if !math.IsInf(r.lo, -1) {
				srows = append(srows, std{r.terms, -1, r.lo, i})
				nslack++
			}
			if !math.IsInf(r.hi, 1) {
				srows = append(srows, std{r.terms, 1, r.hi, i})
				nslack++
			}
		}
	}
	s := &simplex{nv: nv, n: nv + nslack, m: len(srows)}
	M := len(srows)
	s.width = s.n + M + 1
	rhs := s.width - 1
	s.rows = make([][]float64, M)
	s.basis = make([]int, M)
	s.origin = make([]int, M)
	slack := nv
	for i, sr := range srows {
		row := make([]float64, s.width)
		for _, t := range sr.terms {
			row[t.v] += t.coef
		}
		if sr.slack != 0 {
			row[slack] = sr.slack
			slack++
		}
		row[rhs] = sr.rhs
		if sr.rhs < 0 {
			for j := range row {
				row[j] = -row[j]
			}
		}
		row[s.n+i] = 1
		s.rows[i] = row
		s.basis[i] = s.n + i
		if sr.slack == 1 && sr.rhs >= 0 {
			// An upper bound that holds at 0: its slack starts basic.
			s.basis[i] = slack - 1
		}
		s.origin[i] = sr.orig
	}
	// Phase I: minimize the sum of the artificials. With the basis above,
	// the reduced cost of column j is minus the sum of column j over the
	// rows whose artificial is basic (and 1 for the others' artificials).
	// Artificials that leave the basis never enter it again.
	s.obj = make([]float64, s.width)
	for i, row := range s.rows {
		if s.basis[i] < s.n {
			s.obj[s.n+i] = 1
			continue
		}
		for j := range s.n {
			s.obj[j] -= row[j]
		}
		s.obj[rhs] -= row[rhs]
	}
	if _, err := s.iterate(s.n); err != nil {
		return nil, err
	}
	if -s.obj[rhs] > lpFeasTol*float64(1+M) {
		return nil, errLPInfeasible
	}
	// Drive the artificials left in the basis (at zero) out; a row where
	// no structural column can replace one is redundant: drop it.
	for i := 0; i < len(s.rows); i++ {
		if s.basis[i] < s.n {
			continue
		}
		entering := -1
		for j := range s.n {
			if math.Abs(s.rows[i][j]) > 1e-7 {
				entering = j
				break
			}
		}
		if entering < 0 {
			s.rows = append(s.rows[:i], s.rows[i+1:]...)
			s.basis = append(s.basis[:i], s.basis[i+1:]...)
			i--
			continue
		}
		s.pivot(i, entering)
	}
	s.m = len(s.rows)
	return s, nil
}

// pivot makes column j basic in row r. Only the pivot row's non-zero
// columns change the other rows: the tableaux here are mostly zeros.
func (s *simplex) pivot(r, j int) {
	pr := s.rows[r]
	inv := 1 / pr[j]
	nz := s.nz[:0]
	for k, v := range pr {
		if v != 0 {
			pr[k] = v * inv
			nz = append(nz, k)
		}
	}
	pr[j] = 1
	s.nz = nz
	update := func(row []float64) {
		f := row[j]
		if f == 0 {
			return
		}
		for _, k := range nz {
			row[k] -= f * pr[k]
		}
		row[j] = 0
	}
	for i, row := range s.rows {
		if i != r {
			update(row)
		}
	}
	update(s.obj)
	s.basis[r] = j
}

// iterate runs the simplex method on the objective row, letting only
// columns below limit enter. It reports whether the objective is
// unbounded below. Dantzig's rule picks the entering column until a run
// of degenerate pivots suggests cycling; from then on Bland's rule (lowest
// index enters, lowest basic index leaves on ties), which cannot cycle.
func (s *simplex) iterate(limit int) (unbounded bool, err error) {
	rhs := s.width - 1
	bland := false
	degenerate := 0
	for range lpMaxIter {
		entering := -1
		best := -lpEps
		for j := range limit {
			if d := s.obj[j]; d < best {
				entering, best = j, d
				if bland {
					break
				}
			}
		}
		if entering < 0 {
			return false, nil
		}
		leave := -1
		var ratio float64
		for i, row := range s.rows {
			a := row[entering]
			if a <= lpEps {
				continue
			}
			q := row[rhs] / a
			if leave < 0 || q < ratio-lpEps || (q <= ratio+lpEps && s.basis[i] < s.basis[leave]) {
				leave, ratio = i, q
			}
		}
		if leave < 0 {
			return true, nil
		}
		if ratio <= lpEps {
			if degenerate++; degenerate > 50 {
				bland = true
			}
		} else {
			degenerate = 0
		}
		s.pivot(leave, entering)
	}
	return false, errLPIterations
}

// minimize returns min c·x over the feasible set (c over the LP's own
// variables), -Inf when unbounded, and the standard rows whose duals at
// the optimum are not zero: the constraints the bound rests on. It starts
// from the basis the last call ended with: every basis the simplex method
// visits is feasible, so each objective is a warm start.
func (s *simplex) minimize(c []lpTerm) (value float64, binding []int, err error) {
	t := s
	rhs := t.width - 1
	// Reduced costs of the new objective against the current basis.
	clear(t.obj)
	for _, term := range c {
		t.obj[term.v] += term.coef
	}
	for i, b := range t.basis {
		if cb := t.obj[b]; cb != 0 {
			for k, v := range t.rows[i] {
				if v != 0 {
					t.obj[k] -= cb * v
				}
			}
			t.obj[b] = 0
		}
	}
	unbounded, err := t.iterate(t.n)
	if err != nil {
		return 0, nil, err
	}
	if unbounded {
		return math.Inf(-1), nil, nil
	}
	value = -t.obj[rhs]
	for i := t.n; i < rhs; i++ {
		if math.Abs(t.obj[i]) > 1e-7 {
			binding = append(binding, i-t.n)
		}
	}
	return value, binding, nil
}

// point returns the current basic solution over the LP's own variables:
// a feasible point, since every basis the simplex method visits is.
func (s *simplex) point() []float64 {
	x := make([]float64, s.nv)
	rhs := s.width - 1
	for i, b := range s.basis {
		if b < s.nv {
			x[b] = s.rows[i][rhs]
		}
	}
	return x
}
