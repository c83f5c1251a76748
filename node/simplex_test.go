package node

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSimplexMatchesExhaustiveSearch checks the audit's simplex against
// every integer point of tiny LPs whose rows are runs of consecutive
// variables (interval matrices are totally unimodular, so with integer
// bounds every vertex is integral and the LP optimum is the integer one).
// Several objectives run one after the other on one simplex, as the audit
// runs them.
func TestSimplexMatchesExhaustiveSearch(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(19, 61))
	const top = 4 // every variable lies in 0..top
	checked := 0
	for trial := range 400 {
		n := 1 + rng.IntN(4)
		var rows []lpRow
		// An upper bound on the sum keeps the LP bounded.
		all := make([]lpTerm, n)
		for v := range n {
			all[v] = lpTerm{v, 1}
		}
		rows = append(rows, lpRow{all, math.Inf(-1), top})
		for range 1 + rng.IntN(4) {
			a := rng.IntN(n)
			b := a + rng.IntN(n-a)
			var terms []lpTerm
			for v := a; v <= b; v++ {
				terms = append(terms, lpTerm{v, 1})
			}
			switch rng.IntN(3) {
			case 0:
				x := float64(rng.IntN(top + 1))
				rows = append(rows, lpRow{terms, x, x})
			case 1:
				rows = append(rows, lpRow{terms, float64(rng.IntN(3)), math.Inf(1)})
			default:
				lo := float64(rng.IntN(3))
				rows = append(rows, lpRow{terms, lo, lo + float64(rng.IntN(3))})
			}
		}
		feasible := func(x []int) bool {
			for _, r := range rows {
				s := 0.0
				for _, t := range r.terms {
					s += t.coef * float64(x[t.v])
				}
				if s < r.lo-1e-9 || s > r.hi+1e-9 {
					return false
				}
			}
			return true
		}
		var points [][]int
		x := make([]int, n)
		var walk func(int)
		walk = func(i int) {
			if i == n {
				if feasible(x) {
					points = append(points, append([]int(nil), x...))
				}
				return
			}
			for v := 0; v <= top; v++ {
				x[i] = v
				walk(i + 1)
			}
		}
		walk(0)
		s, err := newSimplex(n, rows)
		if len(points) == 0 {
			if err != errLPInfeasible {
				t.Errorf("trial %d: no integer point, got err %v, want errLPInfeasible", trial, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: newSimplex: %v", trial, err)
		}
		for range 4 {
			var obj []lpTerm
			for v := range n {
				if c := rng.IntN(5) - 2; c != 0 {
					obj = append(obj, lpTerm{v, float64(c)})
				}
			}
			want := math.Inf(1)
			for _, p := range points {
				s := 0.0
				for _, t := range obj {
					s += t.coef * float64(p[t.v])
				}
				want = min(want, s)
			}
			got, _, err := s.minimize(obj)
			if err != nil {
				t.Fatalf("trial %d: minimize: %v", trial, err)
			}
			if math.Abs(got-want) > 1e-7 {
				t.Errorf("trial %d: rows %v, objective %v: got min %v, want %v", trial, rows, obj, got, want)
			}
			checked++
		}
	}
	if checked < 500 {
		t.Errorf("got %d objectives checked, want at least 500", checked)
	}
}

// TestSimplexUnboundedAndBinding checks an unbounded objective and the rows
// a bound rests on.
func TestSimplexUnboundedAndBinding(t *testing.T) {
	t.Parallel()
	// x0 + x1 = 5, x1 + x2 = 3, x0 ≥ 1.
	rows := []lpRow{
		{[]lpTerm{{0, 1}, {1, 1}}, 5, 5},
		{[]lpTerm{{1, 1}, {2, 1}}, 3, 3},
		{[]lpTerm{{0, 1}}, 1, math.Inf(1)},
		{[]lpTerm{{3, 1}}, 0, math.Inf(1)},
	}
	s, err := newSimplex(4, rows)
	if err != nil {
		t.Fatal(err)
	}
	// max x1 = 3: it rests on the second row.
	got, binding, err := s.minimize([]lpTerm{{1, -1}})
	if err != nil || got != -3 {
		t.Fatalf("got min -x1 = %v (%v), want -3", got, err)
	}
	rests := false
	for _, b := range binding {
		rests = rests || s.origin[b] == 1
	}
	if !rests {
		t.Errorf("got binding standard rows %v (origins %v), want the second row among them", binding, s.origin)
	}
	if got, _, err := s.minimize([]lpTerm{{3, -1}}); err != nil || !math.IsInf(got, -1) {
		t.Errorf("got min -x3 = %v (%v), want -Inf", got, err)
	}
}
