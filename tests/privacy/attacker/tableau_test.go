package attacker

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// TestTableauAgreesWithGonum solves random LPs shaped like the attacker's
// (0/±1 rows of counts, bounds written with slacks, integer right-hand
// sides from a non-negative point) twice: lp.Simplex warm from phaseOne's
// basis, and primal on the attacker's own tableau. Both must agree, and
// phaseOne's basis must pass gonum's own feasibility check.
func TestTableauAgreesWithGonum(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 19))
	solved := 0
	for trial := range 400 {
		n := 3 + rng.IntN(10)
		m := 1 + rng.IntN(n-1)
		x := make([]float64, n)
		for j := range x {
			x[j] = float64(rng.IntN(6))
		}
		var rows [][]float64
		var rhs []float64
		for len(rows) < m {
			r := make([]float64, n)
			for j := range r {
				switch rng.IntN(4) {
				case 0:
					r[j] = 1
				case 1:
					r[j] = -1
				}
			}
			var v float64
			for j := range r {
				v += r[j] * x[j]
			}
			rows, rhs = append(rows, r), append(rhs, v)
		}
		// Add a slack to the first half of the rows: inequalities, as
		// build writes bounds.
		slacks := m / 2
		a := mat.NewDense(m, n+slacks, nil)
		b := make([]float64, m)
		for i, r := range rows {
			a.SetRow(i, append(r, make([]float64, slacks)...))
			b[i] = rhs[i]
			if i < slacks {
				a.Set(i, n+i, 1)
				b[i] += float64(rng.IntN(3))
			}
		}
		zeroCol := false
		for j := range n + slacks {
			zeroCol = zeroCol || mat.Norm(a.ColView(j), 1) == 0
		}
		if zeroCol {
			continue // an unknown in no row is in no block
		}
		var svd mat.SVD
		svd.Factorize(a, mat.SVDNone)
		if sv := svd.Values(nil); sv[len(sv)-1] < 1e-9 {
			continue // build drops dependent rows before phase I
		}
		basis, err := phaseOne(a, b)
		if err != nil {
			t.Fatalf("trial %d: phase I: %v", trial, err)
		}
		for i := range b {
			for _, j := range basis {
				b[i] += basisLift * a.At(i, j)
			}
		}
		c := make([]float64, n+slacks)
		for j := range n {
			c[j] = float64(rng.IntN(5) - 2)
		}
		want, err := simplex(c, a, b, basis)
		unbounded := errors.Is(err, lp.ErrUnbounded)
		if err != nil && !unbounded {
			t.Fatalf("trial %d: lp.Simplex from phaseOne's basis: %v", trial, err)
		}
		got, err := primal(a, b, c, basis)
		if err != nil {
			t.Fatalf("trial %d: primal: %v", trial, err)
		}
		solved++
		if unbounded != math.IsInf(got, -1) || !unbounded && math.Abs(got-want) > 1e-6 {
			t.Errorf("trial %d: tableau gives %g, lp.Simplex %g (unbounded %v)", trial, got, want, unbounded)
		}
	}
	if solved < 100 {
		t.Errorf("only %d of 400 random LPs were of the attacker's shape", solved)
	}
}

// TestMinimizeFallsBack: an LP lp.Simplex cannot solve goes to the
// tableau, and one neither can (a singular basis) is an error naming both,
// never a range.
func TestMinimizeFallsBack(t *testing.T) {
	t.Parallel()
	// x0 + x1 = 2, x0 + x1 + x2 = 3: columns 0 and 1 are one column twice.
	a := mat.NewDense(2, 3, []float64{1, 1, 0, 1, 1, 1})
	blk := &block{built: true, a: a, b: []float64{2, 3}, basis: []int{0, 1}}
	_, err := blk.minimize([]float64{1, 0, 0})
	if err == nil || !strings.Contains(err.Error(), "lp.Simplex") || !strings.Contains(err.Error(), "tableau") {
		t.Fatalf("got %v, want an error from both solvers", err)
	}
	// From a good basis both agree: x0 can be 0.
	blk.basis = []int{1, 2}
	got, err := blk.minimize([]float64{1, 0, 0})
	if err != nil || math.Abs(got) > 1e-9 {
		t.Fatalf("got %g, %v; want 0", got, err)
	}
	// A basis a hair below 0 (as rounding leaves one): lp.Simplex refuses
	// it (below -1e-13), the tableau takes it, and the LP counts as a
	// fallback.
	blk = &block{built: true, a: mat.NewDense(1, 2, []float64{1, 1}), b: []float64{-1e-11}, basis: []int{0}}
	got, err = blk.minimize([]float64{0, 1})
	if err != nil || math.Abs(got) > 1e-9 || blk.fallbacks != 1 {
		t.Fatalf("got %g, %v, %d fallbacks; want 0 from the fallback", got, err, blk.fallbacks)
	}
}
