package attacker

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// tableau is a dense simplex tableau of Ax = b, x >= 0, with one
// artificial column per row (rows signed so that b >= 0): the tableau is
// B⁻¹[A | I | b] for the current basis B. Pivoting on it accumulates
// rounding, and a tableau updated pivot after pivot from tiny pivots once
// held entries of 2⁶⁴ and a "feasible" basis 39 below zero. So it is
// recomputed from the original columns (reinverted, by LU) every few
// pivots and before any answer is trusted, the ratio test is Harris's
// (among the rows that nearly tie, the largest pivot), and no pivot is
// smaller than tolPivot.
type tableau struct {
	m, n  int        // rows; columns of A (artificials are n..n+m-1)
	full  *mat.Dense // [S·A | I], S the row signs
	rhs   []float64  // S·b
	basis []int      // column basic in each row
	t     [][]float64
	cost  []float64 // over n+m columns
	d     []float64 // reduced costs
	enter int       // only columns below enter may enter the basis
}

const (
	tolPivot   = 1e-7  // smallest pivot taken
	tolCost    = 1e-9  // a reduced cost below -tolCost improves
	tolHarris  = 1e-9  // how far the ratio test lets a basic value go below 0
	reinvertAt = 30    // pivots between reinversions
	tolBasis   = 1e-12 // reciprocal condition below which a basis is singular
)

var errTabUnbounded = errors.New("unbounded")

func newTableau(a *mat.Dense, b []float64) *tableau {
	m, n := a.Dims()
	tb := &tableau{m: m, n: n, full: mat.NewDense(m, n+m, nil), rhs: make([]float64, m), basis: make([]int, m)}
	for i := range m {
		sign := 1.0
		if b[i] < 0 {
			sign = -1
		}
		for j := range n {
			if v := a.At(i, j); v != 0 {
				tb.full.Set(i, j, sign*v)
			}
		}
		tb.full.Set(i, n+i, 1)
		tb.rhs[i] = sign * b[i]
		tb.basis[i] = n + i
	}
	return tb
}

// reinvert recomputes the tableau and the reduced costs from the original
// columns and the basis.
func (tb *tableau) reinvert() error {
	m, w := tb.m, tb.n+tb.m
	bm := mat.NewDense(m, m, nil)
	col := make([]float64, m)
	for k, j := range tb.basis {
		mat.Col(col, j, tb.full)
		bm.SetCol(k, col)
	}
	var lu mat.LU
	lu.Factorize(bm)
	if c := lu.Cond(); !(c < 1/tolBasis) {
		return fmt.Errorf("basis singular (condition %g)", c)
	}
	rhs := mat.NewDense(m, w+1, nil)
	rhs.Slice(0, m, 0, w).(*mat.Dense).Copy(tb.full)
	rhs.SetCol(w, tb.rhs)
	var x mat.Dense
	if err := lu.SolveTo(&x, false, rhs); err != nil {
		var cond mat.Condition
		if !errors.As(err, &cond) {
			return fmt.Errorf("basis: %w", err)
		}
	}
	if tb.t == nil {
		tb.t = make([][]float64, m)
	}
	for i := range m {
		r := x.RawRowView(i)
		row := make([]float64, w+1)
		for j, v := range r {
			if math.Abs(v) > 1e-12 {
				row[j] = v
			}
		}
		tb.t[i] = row
	}
	for k, j := range tb.basis {
		for i := range m {
			tb.t[i][j] = 0
		}
		tb.t[k][j] = 1
	}
	tb.d = make([]float64, w+1)
	copy(tb.d, tb.cost)
	for i, j := range tb.basis {
		if c := tb.cost[j]; c != 0 {
			for jj, v := range tb.t[i] {
				if v != 0 {
					tb.d[jj] -= c * v
				}
			}
		}
	}
	// d[w] is minus the objective.
	return nil
}

func (tb *tableau) pivot(pr, pc int) {
	r := tb.t[pr]
	p := r[pc]
	for j := range r {
		r[j] /= p
	}
	r[pc] = 1
	elim := func(o []float64) {
		f := o[pc]
		if f == 0 {
			return
		}
		for j, v := range r {
			if v != 0 {
				o[j] -= f * v
			}
		}
		o[pc] = 0
	}
	for i, o := range tb.t {
		if i != pr {
			elim(o)
		}
	}
	elim(tb.d)
	tb.basis[pr] = pc
}

// run minimizes the cost from the current (feasible) basis. It returns
// errTabUnbounded when the cost has no lower bound.
func (tb *tableau) run() error {
	if err := tb.reinvert(); err != nil {
		return err
	}
	w := tb.n + tb.m
	fresh := true
	degenerate, pivots := 0, 0
	limit := 50 * (w + 10)
	for iter := 0; ; iter++ {
		if iter > limit {
			return fmt.Errorf("no optimum after %d pivots", iter)
		}
		bland := degenerate >= 50
		pc := -1
		for j := range tb.enter {
			if tb.d[j] < -tolCost && (pc < 0 || !bland && tb.d[j] < tb.d[pc]) {
				pc = j
				if bland {
					break
				}
			}
		}
		if pc < 0 {
			if fresh {
				return nil
			}
			if err := tb.reinvert(); err != nil {
				return err
			}
			fresh = true
			continue
		}
		// Harris: the largest step that leaves every basic value above
		// -tolHarris, then the largest pivot among the rows it allows.
		theta := math.Inf(1)
		for _, r := range tb.t {
			if r[pc] > tolPivot {
				theta = min(theta, (max(r[w], 0)+tolHarris)/r[pc])
			}
		}
		if math.IsInf(theta, 1) {
			if fresh {
				return errTabUnbounded
			}
			if err := tb.reinvert(); err != nil {
				return err
			}
			fresh = true
			continue
		}
		pr := -1
		for i, r := range tb.t {
			if r[pc] <= tolPivot || max(r[w], 0)/r[pc] > theta {
				continue
			}
			if pr < 0 || bland && tb.basis[i] < tb.basis[pr] || !bland && r[pc] > tb.t[pr][pc] {
				pr = i
			}
		}
		if max(tb.t[pr][w], 0)/tb.t[pr][pc] <= 1e-12 {
			degenerate++
		} else {
			degenerate = 0
		}
		tb.pivot(pr, pc)
		fresh = false
		if pivots++; pivots%reinvertAt == 0 {
			if err := tb.reinvert(); err != nil {
				return err
			}
			fresh = true
		}
	}
}

// values are the basic values by row, after a fresh reinversion.
func (tb *tableau) values() []float64 {
	w := tb.n + tb.m
	out := make([]float64, tb.m)
	for i, r := range tb.t {
		out[i] = r[w]
	}
	return out
}

// phaseOne finds a feasible basis of Ax = b, x >= 0 (A of full row rank):
// with one artificial column per row (rows signed so that b >= 0) the
// artificials are a feasible basis of "minimize their sum"; at a zero
// optimum, with the artificials pivoted out, the basis is feasible for A
// alone. It runs on a tableau of its own rather than lp.Simplex: gonum
// refactorizes the basis (and estimates its condition) at every pivot, and
// phase I from the artificials takes a pivot per row, which on a block of a
// hundred rows cost seconds. The optimizations that follow run in
// lp.Simplex, warm from this basis, and gonum checks that it is feasible;
// phaseOne checks it first, on a basis solved afresh by LU.
func phaseOne(a *mat.Dense, b []float64) ([]int, error) {
	tb := newTableau(a, b)
	w := tb.n + tb.m
	tb.cost = make([]float64, w)
	for i := range tb.m {
		tb.cost[tb.n+i] = 1
	}
	tb.enter = tb.n
	if err := tb.run(); err != nil {
		return nil, fmt.Errorf("phase I: %w", err)
	}
	var sum float64
	for _, v := range b {
		sum += math.Abs(v)
	}
	if obj := -tb.d[w]; obj > tolFeas*(1+sum) {
		return nil, fmt.Errorf("phase I: the log's constraints have no solution (artificials sum to %g)", obj)
	}
	// Artificials left in the basis are at 0: swap each for a column of
	// A, the largest entry of its row.
	swapped := false
	for i := range tb.m {
		if tb.basis[i] < tb.n {
			continue
		}
		pc := -1
		for j := range tb.n {
			if v := math.Abs(tb.t[i][j]); v > tolPivot && (pc < 0 || v > math.Abs(tb.t[i][pc])) {
				pc = j
			}
		}
		if pc < 0 {
			return nil, fmt.Errorf("phase I: row %d is a combination of the others", i)
		}
		tb.pivot(i, pc)
		swapped = true
	}
	if swapped {
		if err := tb.reinvert(); err != nil {
			return nil, fmt.Errorf("phase I: %w", err)
		}
	}
	if err := tb.checkFeasible(); err != nil {
		return nil, fmt.Errorf("phase I: %w", err)
	}
	out := slices.Clone(tb.basis)
	slices.Sort(out)
	return out, nil
}

// checkFeasible reports an error unless every basic value (freshly
// reinverted) is at least -basisLift/2, which basisLift puts above 0.
func (tb *tableau) checkFeasible() error {
	for i, v := range tb.values() {
		if v < -basisLift/2 {
			return fmt.Errorf("basis not feasible: column %d at %g", tb.basis[i], v)
		}
	}
	return nil
}

// primal is the minimum of cᵀx over Ax = b, x >= 0 (math.Inf(-1) when
// unbounded), from the feasible basis; a solver of its own for when
// lp.Simplex fails.
func primal(a *mat.Dense, b, c []float64, basis []int) (float64, error) {
	tb := newTableau(a, b)
	copy(tb.basis, basis)
	w := tb.n + tb.m
	tb.cost = make([]float64, w)
	copy(tb.cost, c)
	tb.enter = tb.n
	if err := tb.reinvert(); err != nil {
		return 0, err
	}
	if err := tb.checkFeasible(); err != nil {
		return 0, err
	}
	switch err := tb.run(); {
	case errors.Is(err, errTabUnbounded):
		return math.Inf(-1), nil
	case err != nil:
		return 0, err
	}
	for i, v := range tb.values() {
		if v < -1e-7 {
			return 0, fmt.Errorf("optimum not feasible: column %d at %g", tb.basis[i], v)
		}
	}
	return -tb.d[w], nil
}
