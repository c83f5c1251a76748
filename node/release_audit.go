package node

import (
	"cmp"
	"encoding/binary"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sort"

	"github.com/isa-alliance/fedreport/internal/records"
)

// The release audit. Elimination (protect.go) keeps every protected row out
// of the linear span of the published cells, but an attacker knows more than
// linear algebra: every cell is ≥ 0, a withheld cell is ≥ its published
// lower bound, and, at worst, which withheld cells are primary (1..k-1
// records, so ≥ 1, and ≤ k-1 when their value is). With that, bounds can
// still pin a primary cell to one value (three withheld siblings of 3, 4
// and 4 under a known total of 11 are all pinned when k = 5). The audit is
// that attacker's linear program, run by the node on its own release
// before it stores it:
//
//   - the unknowns are the block's inner cells, before (x) and after (y)
//     the change being released, as the elimination has them, but per
//     table ("factor") rather than per full cross of every dimension: the
//     records of one atom with one offence, say, whatever their channel.
//     Factor variables of one atom are tied by rows saying their totals
//     (and common dimensions) agree. For tables that cross no dimension,
//     or cross them in a chain, any factor values that agree come from a
//     full cross, so nothing is lost; for other crosses it is a
//     relaxation (the attacker in tests/privacy models factors too).
//   - equality rows: every cell this release publishes (on y) and, when
//     there is an earlier release, every cell it published (on x);
//   - bound rows: each withheld cell's published lower bound, and the
//     worst-case knowledge of which cells are primary;
//   - targets: every withheld release cell of 1..k-1 records (now, or in
//     the earlier release) and every change of 1..k-1 records.
//
// A target whose LP range holds one integer only is pinned. When the same
// LP with only the standing cells of this release (its zeros and its named
// periods' totals, which the audit never withholds) pins it too, nothing
// the audit may do helps: it is pinned by knowledge, by those cells or by
// what an earlier release published. Otherwise the audit names a published
// cell to withhold: among the rows the tight bounds rest on (non-zero
// duals), the one the elimination would publish last; when the duals name
// none (a degenerate optimum), the cell whose addition, in the
// elimination's order, first pins the target. protect withholds the cells
// named, eliminates again and audits again. Blocks whose LP is too large
// are not audited (auditMaxFree).
//
// To keep the LPs small the audit first fixes every variable the published
// cells determine (it is in their linear span, so its value is the true
// one) and every variable a published 0 empties, then splits what is left
// into independent components and solves each target's parts apart.

// auditTol is the rounding tolerance of LP bounds: lo rounds up to
// ceil(lo-auditTol), hi down to floor(hi+auditTol).
const auditTol = 1e-6

// auditRow is a constraint of the audit, and where it comes from.
type auditRow struct {
	lpRow
	// cell is the block cell a published row stands for, -1 for rows
	// that stand for no cell this release could withhold (an earlier
	// release's cells, consistency, bounds).
	cell int
}

// auditTarget is a value that must not be pinned.
type auditTarget struct {
	cell  int
	terms []lpTerm
	truth float64
}

// auditLayout is what the audit's LPs share whatever is published: the
// variables, their true values, each cell's row over them, and the rows
// that tie the factors together. protect builds it once per block.
type auditLayout struct {
	factors []uint8
	truth   []float64
	// now[i] and old[i] are cell i's row after and before the change
	// (nil for a hidden atom's cell, and old without an earlier release).
	now, old    [][]lpTerm
	consistency []lpRow
}

// auditModel is the audit's LP over one block, before presolve.
type auditModel struct {
	truth   []float64
	eq      []auditRow
	ineq    []auditRow
	targets []auditTarget
}

// factorCode numbers the dimension values a factor keeps.
func factorCode(mask uint8, off, ch, age uint8) int {
	o, c, a := project(mask, off, ch, age)
	return (int(o)*nChannels+int(c))*nVictimAges + int(a)
}

// innerPerAtom is the number of inner cells of one atom.
var innerPerAtom = nOffences * nChannels * nVictimAges

// decodeInner returns the atom and dimension values of inner cell i.
func decodeInner(i int32) (atom int, off, ch, age uint8) {
	atom = int(i / int32(innerPerAtom))
	r := i % int32(innerPerAtom)
	return atom, uint8(r / int32(nChannels*nVictimAges)), uint8(r / int32(nVictimAges) % int32(nChannels)), uint8(r % int32(nVictimAges))
}

// factors returns the block's tables that no other of its tables contains,
// sorted: every cell is a sum of their cells, so the audit's variables are
// theirs.
func (p *blockProblem) factors() []uint8 {
	masks := map[uint8]bool{}
	for _, c := range p.cells {
		masks[c.key.mask] = true
	}
	var factors []uint8
	for mask := range masks {
		maximal := true
		for other := range masks {
			if other != mask && other&mask == mask {
				maximal = false
			}
		}
		if maximal {
			factors = append(factors, mask)
		}
	}
	slices.Sort(factors)
	return factors
}

// layout returns the block's audit layout, building it on first use.
// The variables are the records of one value of a factor (a table no
// other table contains) in one atom, before or after the change; one
// whose inner cells no write touched is one unknown before and after.
func (p *blockProblem) layout() *auditLayout {
	if p.audited != nil {
		return p.audited
	}
	l := &auditLayout{factors: p.factors()}
	nf := len(l.factors)
	// slot numbers (atom, factor, value); code[i*nf+f] is inner cell i's
	// value in factor f.
	slot := func(atom, f, val int) int { return (atom*nf+f)*innerPerAtom + val }
	nslots := len(p.atoms) * nf * innerPerAtom
	truthNow := make([]uint64, nslots)
	truthOld := make([]uint64, nslots)
	changed := make([]bool, nslots)
	code := make([]int, innerPerAtom*nf)
	for r := range int32(innerPerAtom) {
		_, o, c, a := decodeInner(r)
		for f, mask := range l.factors {
			code[int(r)*nf+f] = factorCode(mask, o, c, a)
		}
	}
	for i := range p.nInner {
		atom, r := i/innerPerAtom, i%innerPerAtom
		for f := range nf {
			s := slot(atom, f, code[r*nf+f])
			truthNow[s] += p.nowV[i].value
			truthOld[s] += p.oldV[i].value
			if p.based && !p.unchanged[i] {
				changed[s] = true
			}
		}
	}
	ids := make([]int32, 2*nslots) // +1; after, then before
	variable := func(old bool, atom, f, val int) int {
		s := slot(atom, f, val)
		k := s
		if old && changed[s] {
			k += nslots
		} else {
			old = false
		}
		if ids[k] == 0 {
			ids[k] = int32(len(l.truth)) + 1
			t := truthNow[s]
			if old {
				t = truthOld[s]
			}
			l.truth = append(l.truth, float64(t))
		}
		return int(ids[k] - 1)
	}
	seen := map[int]bool{}
	rowOf := func(c *bcell, old bool) []lpTerm {
		f := 0
		for i, mask := range l.factors {
			if mask&c.key.mask == c.key.mask {
				f = i
				break
			}
		}
		clear(seen)
		var terms []lpTerm
		for _, i := range c.inner {
			atom, r := int(i)/innerPerAtom, int(i)%innerPerAtom
			if v := variable(old, atom, f, code[r*nf+f]); !seen[v] {
				seen[v] = true
				terms = append(terms, lpTerm{v, 1})
			}
		}
		return mergeTerms(terms)
	}
	l.now = make([][]lpTerm, len(p.cells))
	l.old = make([][]lpTerm, len(p.cells))
	for ci, c := range p.cells {
		if !c.period {
			continue
		}
		l.now[ci] = rowOf(c, false)
		if p.based {
			l.old[ci] = rowOf(c, true)
		}
	}
	// Consistency: in every atom, each pair of factors agrees on what
	// they have in common (at least the atom's total).
	for _, old := range []bool{false, true} {
		if old && !p.based {
			continue
		}
		for atom := range len(p.atoms) {
			for i := range nf {
				for j := i + 1; j < nf; j++ {
					sep := l.factors[i] & l.factors[j]
					rows := map[int]map[int]float64{}
					for r := range int32(innerPerAtom) {
						_, o, c, a := decodeInner(r)
						sc := factorCode(sep, o, c, a)
						if rows[sc] == nil {
							rows[sc] = map[int]float64{}
						}
						rows[sc][variable(old, atom, i, code[int(r)*nf+i])] = 1
						rows[sc][variable(old, atom, j, code[int(r)*nf+j])] = -1
					}
					for _, sc := range slices.Sorted(maps.Keys(rows)) {
						var terms []lpTerm
						for v, c := range rows[sc] {
							terms = append(terms, lpTerm{v, c})
						}
						l.consistency = append(l.consistency, lpRow{mergeTerms(terms), 0, 0})
					}
				}
			}
		}
	}
	p.audited = l
	return l
}

// newAuditModel lays out the audit of the block as it is published now.
// Without release, the rows of this release's published cells (but the
// standing ones) and of its withheld cells' bounds are left out:
// what is pinned then is pinned whatever else this release publishes.
func (p *blockProblem) newAuditModel(release bool) *auditModel {
	return p.auditModelOf(func(c *bcell) bool { return release || p.standing(c) }, release)
}

// auditModelOf lays out the audit with the published cells that publish
// says, and the withheld cells' published bounds when bounds is true.
func (p *blockProblem) auditModelOf(publish func(*bcell) bool, bounds bool) *auditModel {
	if p.hist != nil {
		return p.historyAuditModel(publish, bounds)
	}
	l := p.layout()
	m := &auditModel{truth: l.truth}
	ki := float64(p.k - 1)
	for ci, c := range p.cells {
		if !c.period {
			continue
		}
		if c.published && publish(c) {
			m.eq = append(m.eq, auditRow{lpRow{l.now[ci], float64(c.now.value), float64(c.now.value)}, ci})
		}
		if p.based && !c.barred {
			m.eq = append(m.eq, auditRow{lpRow{l.old[ci], float64(c.old.value), float64(c.old.value)}, -1})
		}
		if !c.published {
			lo, hi := 0.0, math.Inf(1)
			if bounds {
				lo = float64(p.withheldLower(c))
			}
			if small(c.now, p.k) {
				lo = max(lo, 1)
				if c.now.value <= p.k-1 {
					hi = ki
				}
				m.targets = append(m.targets, auditTarget{ci, l.now[ci], float64(c.now.value)})
			}
			if lo > 0 || !math.IsInf(hi, 1) {
				m.ineq = append(m.ineq, auditRow{lpRow{l.now[ci], lo, hi}, -1})
			}
		}
		if p.based && c.barred {
			lo, hi := float64(c.base.lower), math.Inf(1)
			if small(c.old, p.k) {
				lo = max(lo, 1)
				if c.old.value <= p.k-1 {
					hi = ki
				}
				m.targets = append(m.targets, auditTarget{ci, l.old[ci], float64(c.old.value)})
			}
			if lo > 0 || !math.IsInf(hi, 1) {
				m.ineq = append(m.ineq, auditRow{lpRow{l.old[ci], lo, hi}, -1})
			}
		}
		if p.based && c.changed > 0 && c.changed < p.k {
			terms := slices.Clone(l.now[ci])
			for _, t := range l.old[ci] {
				terms = append(terms, lpTerm{t.v, -t.coef})
			}
			m.targets = append(m.targets, auditTarget{ci, mergeTerms(terms), float64(c.now.value) - float64(c.old.value)})
		}
	}
	for _, r := range l.consistency {
		m.eq = append(m.eq, auditRow{r, -1})
	}
	return m
}

// standing reports whether c is a published cell the audit never
// withholds: a 0 (the bounds of a withheld cell say it holds records), or
// the total of a named period, an operation or a phase (the ministry
// publishes those exact). A target they pin with what an attacker knows
// anyway is reported, not fixed. A cell the last release withheld or held
// pending is no standing cell of a release protected against its history
// (release_history.go): publishing it again is what that release may
// withhold, and no worse than protecting the block the plain way, which
// would keep it withheld.
func (p *blockProblem) standing(c *bcell) bool {
	if !c.published || p.hist != nil && c.barred {
		return false
	}
	if c.now.value == 0 {
		return true
	}
	if c.key.mask != 0 {
		return false
	}
	m := records.MonthOf(c.key.from)
	return c.key.from != records.FirstDayOfMonth(m) || c.key.to != records.FirstDayOfMonth(m+1)-1
}

// small reports whether v holds 1..k-1 records: a primary as the
// worst-case attacker knows it.
func small(v innerVal, k uint64) bool { return v.records >= 1 && v.records < k }

// mergeTerms sorts terms by variable and adds up repeated ones (a change
// of an untouched variable cancels).
func mergeTerms(terms []lpTerm) []lpTerm {
	slices.SortFunc(terms, func(a, b lpTerm) int { return cmp.Compare(a.v, b.v) })
	out := terms[:0]
	for _, t := range terms {
		if n := len(out); n > 0 && out[n-1].v == t.v {
			out[n-1].coef += t.coef
			if out[n-1].coef == 0 {
				out = out[:n-1]
			}
			continue
		}
		out = append(out, t)
	}
	return out
}

// withheldLower is the lower bound the release publishes for a withheld
// cell: a cell withheld for the first time holds records (a 0 is
// published), one an earlier release withheld may have emptied, and a cell
// held at its previous value says nothing of the new one.
func (p *blockProblem) withheldLower(c *bcell) uint64 {
	if c.barred || p.pendingCell(c) {
		return 0
	}
	return 1
}

// pendingCell reports whether withheld cell c keeps an earlier release's
// value, marked pending.
func (p *blockProblem) pendingCell(c *bcell) bool {
	return p.based && ((c.base.exact() && c.base.value > 0) || c.base.pending)
}

// presolved is the audit's LP once the determined variables are fixed.
type presolved struct {
	fixed []bool
	value []float64 // of fixed variables
	rows  []auditRow
	comp  []int // component of each free variable
	// lps caches each component's feasible simplex and its rows.
	lps map[int]*componentLP
}

// componentLP is the LP of one component: its variables renumbered from 0.
type componentLP struct {
	local map[int]int
	rows  []auditRow
	s     *simplex
	err   error
	// points are feasible points the simplex stopped at (over the local
	// variables), the latest last: rangeOf tries them before solving.
	points [][]float64
}

// maxPoints bounds componentLP.points.
const maxPoints = 32

// keepPoint adds the simplex's current basic solution to the points.
func (c *componentLP) keepPoint() {
	if len(c.points) == maxPoints {
		c.points = slices.Delete(c.points, 0, 1)
	}
	c.points = append(c.points, c.s.point())
}

// presolve fixes the variables the equality rows determine and splits the
// rest into independent components.
func (m *auditModel) presolve() *presolved {
	n := len(m.truth)
	ps := &presolved{fixed: make([]bool, n), value: make([]float64, n), lps: map[int]*componentLP{}}
	fix := func(v int) bool {
		if ps.fixed[v] {
			return false
		}
		ps.fixed[v], ps.value[v] = true, m.truth[v]
		return true
	}
	// A published 0 empties every variable under it. (Other rows could
	// fix more, by the same sign argument, but then the LP would not see
	// the rows that pin a target: they are left to it.)
	zeros := func() {
		for _, r := range m.eq {
			if r.lo != 0 || r.hi != 0 || slices.ContainsFunc(r.terms, func(t lpTerm) bool { return t.coef < 0 }) {
				continue
			}
			for _, t := range r.terms {
				fix(t.v)
			}
		}
	}
	zeros()
	// What the published cells span: a variable in it is determined.
	// An equality row in the span of the rows before it is redundant:
	// the LP keeps the others only.
	sp := newSpan(n)
	independent := make([]bool, len(m.eq))
	for i, r := range m.eq {
		var v vec
		for _, t := range r.terms {
			if !ps.fixed[t.v] {
				v = append(v, entry{int32(t.v), modOf(t.coef)})
			}
		}
		if len(v) == 0 {
			continue
		}
		if red := sp.reduce(v); len(red) > 0 {
			sp.add(red)
			independent[i] = true
		}
	}
	for v := range n {
		if !ps.fixed[v] && len(sp.reduce(vec{{int32(v), 1}})) == 0 {
			fix(v)
		}
	}

	// The rows left, over free variables only. Bound rows over the same
	// variables are one row with the tighter bounds; a lower bound of 0
	// or less says nothing.
	free := func(r auditRow) (terms []lpTerm, shift float64) {
		for _, t := range r.terms {
			if ps.fixed[t.v] {
				shift += t.coef * ps.value[t.v]
			} else {
				terms = append(terms, t)
			}
		}
		return terms, shift
	}
	for i, r := range m.eq {
		if terms, shift := free(r); independent[i] && len(terms) > 0 {
			ps.rows = append(ps.rows, auditRow{lpRow{terms, r.lo - shift, r.hi - shift}, r.cell})
		}
	}
	bounds := map[string]int{}
	for _, r := range m.ineq {
		terms, shift := free(r)
		lo, hi := r.lo-shift, r.hi-shift
		if len(terms) == 0 || (lo <= auditTol && math.IsInf(hi, 1)) {
			continue
		}
		if lo <= auditTol {
			lo = math.Inf(-1)
		}
		sig := termsSignature(terms)
		if i, ok := bounds[sig]; ok {
			ps.rows[i].lo, ps.rows[i].hi = max(ps.rows[i].lo, lo), min(ps.rows[i].hi, hi)
			continue
		}
		bounds[sig] = len(ps.rows)
		ps.rows = append(ps.rows, auditRow{lpRow{terms, lo, hi}, -1})
	}
	// Components: free variables joined by a row.
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for _, r := range ps.rows {
		for _, t := range r.terms[1:] {
			a, b := find(r.terms[0].v), find(t.v)
			if a != b {
				parent[a] = b
			}
		}
	}
	ps.comp = make([]int, n)
	for i := range n {
		ps.comp[i] = find(i)
	}
	return ps
}

// termsSignature is a key of the terms' variables and coefficients.
func termsSignature(terms []lpTerm) string {
	b := make([]byte, 0, 12*len(terms))
	for _, t := range terms {
		b = binary.LittleEndian.AppendUint32(b, uint32(t.v))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(t.coef))
	}
	return string(b)
}

func modOf(c float64) uint64 {
	if c >= 0 {
		return uint64(c) % modulus
	}
	return modulus - uint64(-c)%modulus
}

// lp returns the feasible simplex of component comp.
func (ps *presolved) lp(comp int) *componentLP {
	if c, ok := ps.lps[comp]; ok {
		return c
	}
	c := &componentLP{local: map[int]int{}}
	for _, r := range ps.rows {
		if ps.comp[r.terms[0].v] != comp {
			continue
		}
		lr := auditRow{lpRow{make([]lpTerm, len(r.terms)), r.lo, r.hi}, r.cell}
		for i, t := range r.terms {
			id, ok := c.local[t.v]
			if !ok {
				id = len(c.local)
				c.local[t.v] = id
			}
			lr.terms[i] = lpTerm{id, t.coef}
		}
		c.rows = append(c.rows, lr)
	}
	rows := make([]lpRow, len(c.rows))
	for i, r := range c.rows {
		rows[i] = r.lpRow
	}
	c.s, c.err = newSimplex(len(c.local), rows)
	if c.err == nil {
		c.keepPoint()
	}
	ps.lps[comp] = c
	return c
}

// auditRange is the LP range of a target, and what it rests on.
type auditRange struct {
	lo, hi  float64
	binding []int // cells of published rows the bounds rest on
	comps   []int
	err     error
}

// rangeOf returns the LP range of target t: its fixed part plus, for each
// component it reaches, the minimum and maximum there.
func (ps *presolved) rangeOf(t auditTarget) auditRange {
	var r auditRange
	parts := map[int][]lpTerm{}
	for _, term := range t.terms {
		if ps.fixed[term.v] {
			r.lo += term.coef * ps.value[term.v]
			continue
		}
		c := ps.comp[term.v]
		parts[c] = append(parts[c], term)
	}
	r.hi = r.lo
	r.comps = slices.Sorted(maps.Keys(parts))
	// A variable in no row (the history's model has some) is held by
	// x ≥ 0 alone: the target's range is a half-line, never pinned, and
	// the component's LP has no column for it.
	for c, terms := range parts {
		lp := ps.lp(c)
		for _, term := range terms {
			if _, ok := lp.local[term.v]; !ok {
				r.lo, r.hi = math.Inf(-1), math.Inf(1)
				return r
			}
		}
	}
	type bound struct {
		value   float64
		binding []int
	}
	solve := func(c int, sign float64) (bound, error) {
		lp := ps.lp(c)
		if lp.err != nil {
			return bound{}, lp.err
		}
		obj := make([]lpTerm, len(parts[c]))
		for i, term := range parts[c] {
			obj[i] = lpTerm{lp.local[term.v], sign * term.coef}
		}
		v, binding, err := lp.s.minimize(obj)
		if err == nil {
			lp.keepPoint()
		}
		var b bound
		b.value = sign * v
		for _, std := range binding {
			if cell := lp.rows[lp.s.origin[std]].cell; cell >= 0 {
				b.binding = append(b.binding, cell)
			}
		}
		return b, err
	}
	// A point the simplex stopped at for another target is feasible too:
	// one that puts this target a whole unit from the truth shows that
	// its range holds two integers, without solving. (The range is then
	// left unknown: only pinned ranges are used.)
	if ps.apartAtPoints(parts, r.lo, t.truth) {
		r.lo, r.hi = math.Inf(-1), math.Inf(1)
		return r
	}
	// The truth is feasible: once the maximum is a whole unit above it,
	// the range holds two integers and the minimum is not needed.
	for _, c := range r.comps {
		b, err := solve(c, -1)
		if err != nil {
			r.err = err
			return r
		}
		r.hi += b.value
		r.binding = append(r.binding, b.binding...)
	}
	if r.hi >= t.truth+1-auditTol {
		r.lo = math.Inf(-1)
		return r
	}
	for _, c := range r.comps {
		b, err := solve(c, 1)
		if err != nil {
			r.err = err
			return r
		}
		r.lo += b.value
		r.binding = append(r.binding, b.binding...)
	}
	return r
}

// apartAtPoints reports whether the components' kept points take the
// target (fixed plus parts, by component) a whole unit above or below
// truth. Components are independent, so any choice of one point in each
// is feasible.
func (ps *presolved) apartAtPoints(parts map[int][]lpTerm, fixed, truth float64) bool {
	lo, hi := fixed, fixed
	for c, terms := range parts {
		lp := ps.lps[c]
		if lp == nil || lp.err != nil || len(lp.points) == 0 {
			return false
		}
		cmin, cmax := math.Inf(1), math.Inf(-1)
		for _, x := range lp.points {
			v := 0.0
			for _, t := range terms {
				v += t.coef * x[lp.local[t.v]]
			}
			cmin, cmax = min(cmin, v), max(cmax, v)
		}
		lo, hi = lo+cmin, hi+cmax
	}
	return hi >= truth+1-auditTol || lo <= truth-1+auditTol
}

// pinned reports whether a range holds one integer at most.
func (r auditRange) pinned() bool {
	return r.err == nil && math.Floor(r.hi+auditTol)-math.Ceil(r.lo-auditTol) < 1
}

// auditMaxFree bounds the audit: a block whose LP keeps more unknowns than
// this once the published cells have fixed what they determine is not
// audited (p.unaudited), and its release rests on elimination and the sum
// families alone. The dense tableau grows with the square of the unknowns;
// the random runs and the demo stay under 140 with the default tables,
// while a full offence × channel × age cross over a sparse year keeps
// several hundred and took minutes.
const auditMaxFree = 250

// audit returns the published cells to withhold so that fewer targets are
// pinned; how many targets are pinned whatever this release does
// (foreknown: by knowledge, by the cells it never withholds or, with a
// history, by the earlier releases alone); and how many are pinned though
// no cell it could withhold is named (stuck). Targets in skip (by
// termsSignature) are known not to be pinned; unpinned are the targets it
// found not pinned, and the ones it skipped.
func (p *blockProblem) audit(skip map[string]bool) (withhold []int, foreknown, stuck int, unpinned map[string]bool) {
	m := p.newAuditModel(true)
	if len(m.targets) == 0 {
		return nil, 0, 0, nil
	}
	ps := m.presolve()
	free := 0
	for _, f := range ps.fixed {
		if !f {
			free++
		}
	}
	if free > auditMaxFree || p.hist != nil && free > historyMaxFree {
		p.unaudited = true
		return nil, 0, 0, nil
	}
	var ref *presolved
	var refTargets []auditTarget
	chosen := map[int]bool{}
	unpinned = map[string]bool{}
	for ti, t := range m.targets {
		sig := termsSignature(t.terms)
		if p.pinnedBefore[sig] {
			foreknown++
			continue
		}
		if skip[sig] {
			unpinned[sig] = true
			continue
		}
		r := ps.rangeOf(t)
		if r.err != nil && p.hist != nil {
			// A release protected against its history publishes
			// again only what the audit checked.
			p.unaudited = true
			return nil, 0, 0, nil
		}
		if !r.pinned() {
			unpinned[sig] = true
			continue
		}
		if ref == nil {
			rm := p.newAuditModel(false)
			ref, refTargets = rm.presolve(), rm.targets
		}
		if ref.rangeOf(refTargets[ti]).pinned() {
			foreknown++
			continue
		}
		c := p.cheapestCell(r.binding)
		if c < 0 {
			// The duals name no cell this release could withhold (the
			// optimum is degenerate): find one by search instead.
			c = p.neededCell(ti)
		}
		if c < 0 {
			stuck++
			continue
		}
		chosen[c] = true
	}
	return slices.Sorted(maps.Keys(chosen)), foreknown, stuck, unpinned
}

// neededCell returns a published cell without which target ti of the
// audit is not pinned, given the cells the elimination publishes before
// it: adding published cells in the elimination's order (most valuable
// first) only narrows the target's range, so a binary search finds the
// first cell whose addition pins it. -1 when the withheld cells' bounds
// alone pin it.
func (p *blockProblem) neededCell(ti int) int {
	var order []int
	for i, c := range p.cells {
		if c.period && c.published && !p.standing(c) {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := p.cells[a], p.cells[b]
		return cmp.Or(cmp.Compare(bits.OnesCount8(ca.key.mask), bits.OnesCount8(cb.key.mask)),
			cmp.Compare(cb.days, ca.days), cmp.Compare(cb.now.value, ca.now.value))
	})
	pinnedWith := func(n int) bool {
		with := make(map[*bcell]bool, n)
		for _, i := range order[:n] {
			with[p.cells[i]] = true
		}
		m := p.auditModelOf(func(c *bcell) bool { return with[c] || p.standing(c) }, true)
		return m.presolve().rangeOf(m.targets[ti]).pinned()
	}
	// pinnedWith(len(order)) holds: the audit found the target pinned.
	n := sort.Search(len(order)+1, pinnedWith)
	if n == 0 || n > len(order) {
		return -1
	}
	return order[n-1]
}

// cheapestCell returns the published cell among cells that costs least
// to withhold (-1 for none): the last the elimination would publish, in
// its order reversed (most dimensions, shortest window, smallest value),
// then the fewest records. A standing cell is never withheld.
func (p *blockProblem) cheapestCell(cells []int) int {
	best := -1
	for _, ci := range cells {
		c := p.cells[ci]
		if !c.published || p.standing(c) {
			continue
		}
		if best < 0 {
			best = ci
			continue
		}
		b := p.cells[best]
		if cmp.Or(cmp.Compare(bits.OnesCount8(b.key.mask), bits.OnesCount8(c.key.mask)), cmp.Compare(c.days, b.days),
			cmp.Compare(c.now.value, b.now.value), cmp.Compare(c.now.records, b.now.records), cmp.Compare(ci, best)) < 0 {
			best = ci
		}
	}
	return best
}

func overlaps(a, b []lpTerm) bool {
	for _, x := range a {
		for _, y := range b {
			if x.v == y.v {
				return true
			}
		}
	}
	return false
}
