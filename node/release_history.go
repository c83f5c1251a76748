package node

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Republishing (DESIGN.md "Revisions"). A release protected against the
// last one only must keep whatever that one withheld or held pending: a
// cell it publishes again can pin an earlier cell or change through the
// releases before the last. So each block keeps the history of its
// releases (the data each was computed from and what it published), and a
// release that would publish a withheld or pending cell again is protected
// against all of them at once:
//
//   - the unknowns are the inner cells of every release, one per run of
//     releases over which the cell did not change (a worst-case attacker
//     knows which cells a write touched);
//   - every cell any earlier release published is known, and every cell
//     that was primary in any release, and every change of 1..k-1 records
//     between two releases in a row, stays out of the published span;
//   - a cell published exactly in an earlier release moves only by a
//     change of 0 or k or more records since then, and a smaller change
//     since then is protected like one between two releases in a row;
//   - the audit's LP (release_audit.go) runs over every release: an earlier
//     release's withheld cells keep their published lower bounds, its
//     primaries their 1..k-1, and each is a target, as is each small change.
//
// When that cannot be judged (the history is missing, too long, or its LP
// too large) or does not settle, the block is protected the plain way,
// against the last release, and what it withheld stays withheld.

// maxHistory bounds a block's history: a block with this many recorded
// releases drops its history and from then on keeps what it withholds
// withheld, as a release without a history does. A block whose release
// publishes everything as 0 starts a new history: nothing before it can
// be linked to what comes after.
const maxHistory = 32

// historyMaxFree bounds the audit over a block's history: the unknowns its
// LP keeps once the earlier releases' cells have fixed what they determine.
// The unknowns grow with the releases (each write adds those under the
// cells it left withheld), and the dense LP's time with their square and
// more: a block past this bound drops its history, as one past maxHistory.
const historyMaxFree = 160

// histVersion is one earlier release of a block.
type histVersion struct {
	inner     []innerVal // the data, by inner cell
	published []bool     // by cell: published exactly
	lower     []bool     // by cell: withheld with a lower bound of 1
}

// useHistory makes the problem protect the release against hist, the
// earlier releases of the block, oldest first (the last one is the base
// fill was given).
func (p *blockProblem) useHistory(hist []histVersion) {
	p.hist = hist
	n := len(hist) + 1
	p.atVal = make([][]innerVal, n)
	p.atChanged = make([][]uint64, n)
	for t := range n {
		vals := p.valsAt(t)
		p.atVal[t] = make([]innerVal, len(p.cells))
		p.atChanged[t] = make([]uint64, len(p.cells))
		var before []innerVal
		if t > 0 {
			before = p.valsAt(t - 1)
		}
		for ci, c := range p.cells {
			var v innerVal
			var changed uint64
			for _, i := range c.inner {
				v.add(vals[i])
				if before != nil {
					changed += changedRecords(before[i], vals[i])
				}
			}
			p.atVal[t][ci], p.atChanged[t][ci] = v, changed
		}
	}
	p.since = p.smallSince()
}

// valsAt is the data of release t: an earlier one, or this one when t is
// len(p.hist).
func (p *blockProblem) valsAt(t int) []innerVal {
	if t == len(p.hist) {
		return p.nowV
	}
	return p.hist[t].inner
}

// publishedAtVersion reports whether release t (an earlier one) published
// cell ci exactly.
func (p *blockProblem) publishedAtVersion(t, ci int) bool { return p.hist[t].published[ci] }

// withheldOrPending reports whether the last release withheld a cell or
// held one pending: only then is there anything to republish.
func (p *blockProblem) withheldOrPending() bool {
	for _, c := range p.cells {
		if c.period && c.barred {
			return true
		}
	}
	return false
}

// smallSince returns, by cell, the earlier releases that published the
// cell exactly and from which its change to this release is 1..k-1
// records. Comparing such a release with this one must not isolate the
// change, whatever the releases in between showed: the cell is withheld
// (blockedByHistory) and the change is protected and audited like the
// change between two releases in a row.
func (p *blockProblem) smallSince() [][]int {
	since := make([][]int, len(p.cells))
	for ci, c := range p.cells {
		if !c.period {
			continue
		}
		for t := range p.hist {
			if !p.publishedAtVersion(t, ci) {
				continue
			}
			var changed uint64
			for _, i := range c.inner {
				changed += changedRecords(p.hist[t].inner[i], p.nowV[i])
			}
			if changed > 0 && changed < p.k {
				since[ci] = append(since[ci], t)
			}
		}
	}
	return since
}

// blockedByHistory returns, by cell, the cells this release must withhold
// whatever the elimination says: primaries, and cells published exactly
// in an earlier release whose change since then is 1..k-1 records (a
// published value moves only by a publishable change).
func (p *blockProblem) blockedByHistory() []bool {
	blocked := make([]bool, len(p.cells))
	for ci, c := range p.cells {
		blocked[ci] = c.period && (p.primary(c.now) || len(p.since[ci]) > 0)
	}
	return blocked
}

// historyColumns numbers the unknowns of the elimination over the history:
// one per inner cell and run of releases over which its data did not
// change, except runs a published 0 shows to be empty (in this release,
// the cells with value 0 that blocked does not withhold: they are
// published). rowAt is a cell's row in release t, delta its change from
// release s to t.
func (p *blockProblem) historyColumns(blocked []bool) (rowAt func(inner []int32, t int) vec, delta func(inner []int32, s, t int) vec, cols int32) {
	n := len(p.hist) + 1
	zero := make([][]bool, n)
	for t := range n {
		zero[t] = make([]bool, p.nInner)
		for ci, c := range p.cells {
			if !c.period || p.atVal[t][ci].value != 0 {
				continue
			}
			if t < len(p.hist) && !p.publishedAtVersion(t, ci) || t == len(p.hist) && blocked[ci] {
				continue
			}
			for _, i := range c.inner {
				zero[t][i] = true
			}
		}
	}
	col := make([][]int32, n)
	for t := range n {
		col[t] = make([]int32, p.nInner)
	}
	for i := range p.nInner {
		for start := 0; start < n; {
			end := start + 1
			for end < n && p.valsAt(end)[i] == p.valsAt(start)[i] {
				end++
			}
			c := cols
			for t := start; t < end; t++ {
				if zero[t][i] {
					c = -1
				}
			}
			if c >= 0 {
				cols++
			}
			for t := start; t < end; t++ {
				col[t][i] = c
			}
			start = end
		}
	}
	rowAt = func(inner []int32, t int) vec {
		var r vec
		for _, i := range inner {
			if c := col[t][i]; c >= 0 {
				r = append(r, entry{c, 1})
			}
		}
		slices.SortFunc(r, func(a, b entry) int { return cmp.Compare(a.col, b.col) })
		return r
	}
	delta = func(inner []int32, s, t int) vec {
		var r vec
		for _, i := range inner {
			if c := col[t][i]; c >= 0 {
				r = append(r, entry{c, 1})
			}
			if c := col[s][i]; c >= 0 {
				r = append(r, entry{c, modulus - 1})
			}
		}
		// A column that stands for the cell before and after cancels.
		return merged(r)
	}
	return rowAt, delta, cols
}

// protectHistory decides which cells are published, protecting the
// release against every earlier release of the block (see the top of this
// file). It reports false when it cannot: the caller then protects the
// block the plain way (protect), and the problem's pattern is to be thrown
// away.
func (p *blockProblem) protectHistory() (exposed int, ok bool) {
	// The history's LP without this release's cells: too large, and the
	// block cannot be judged; otherwise what it pins is pinned anyway.
	if p.pinnedBefore = p.pinnedByHistory(); p.pinnedBefore == nil {
		p.unaudited = true
		return 0, false
	}
	last := len(p.hist)
	blocked := p.blockedByHistory()
	rowAt, delta, cols := p.historyColumns(blocked)

	// Candidates: every cell an earlier release published (forced), then
	// this release's cells in the order protect uses.
	var cands []candidate
	seen := map[string]bool{}
	for t := range p.hist {
		for ci, c := range p.cells {
			if !c.period || !p.publishedAtVersion(t, ci) {
				continue
			}
			r := rowAt(c.inner, t)
			if sig := r.signature(); !seen[sig] {
				seen[sig] = true
				cands = append(cands, candidate{row: r, forced: true})
			}
		}
	}
	first := len(cands)
	order := p.candidateOrder()
	for _, ci := range order {
		cands = append(cands, candidate{row: rowAt(p.cells[ci].inner, last), barred: blocked[ci]})
	}

	// Protected: every cell that was primary in any release, this one
	// included, every change of 1..k-1 records between two releases in a
	// row, and every such change from a release that published the cell
	// to this one.
	var prot []protectedRow
	protSeen := map[string]bool{}
	protectRow := func(pr protectedRow) {
		if sig := pr.row.signature(); !protSeen[sig] {
			protSeen[sig] = true
			prot = append(prot, pr)
		}
	}
	for t := last; t >= 0; t-- {
		for ci, c := range p.cells {
			if p.primary(p.atVal[t][ci]) {
				protectRow(protectedRow{row: rowAt(c.inner, t), cell: ci, earlier: t < last})
			}
			if n := p.atChanged[t][ci]; t > 0 && n > 0 && n < p.k {
				protectRow(protectedRow{row: delta(c.inner, t-1, t), cell: ci, delta: true, earlier: t < last})
			}
		}
	}
	for ci, c := range p.cells {
		for _, s := range p.since[ci] {
			protectRow(protectedRow{row: delta(c.inner, s, last), cell: ci, delta: true})
		}
	}
	return p.settle(cols, cands, first, order, prot, func(inner []int32) vec { return rowAt(inner, last) }, true)
}

// pinnedByHistory returns the targets the earlier releases and knowledge
// pin with none of this release's cells (every cell counted withheld):
// with more rows a range only narrows, so they are pinned whatever this
// release publishes, and the audit need not solve them again each round.
// Nil when the history's LP keeps more than historyMaxFree unknowns, or
// cannot be solved.
func (p *blockProblem) pinnedByHistory() map[string]bool {
	m := p.historyAuditModel(func(*bcell) bool { return false }, false)
	ps := m.presolve()
	free := 0
	for _, f := range ps.fixed {
		if !f {
			free++
		}
	}
	if free > historyMaxFree {
		return nil
	}
	pinned := map[string]bool{}
	for _, t := range m.targets {
		r := ps.rangeOf(t)
		if r.err != nil {
			return nil
		}
		if r.pinned() {
			pinned[termsSignature(t.terms)] = true
		}
	}
	return pinned
}

// historyLayout is the audit's layout over the history: variables are the
// records of one value of a factor in one atom over a run of releases in
// which they did not change.
type historyLayout struct {
	truth []float64
	// rows[t][ci] is cell ci's row in release t (nil for a hidden atom's
	// cell); a row that did not change from release t-1 is the same slice,
	// and fresh[t][ci] is false.
	rows        [][][]lpTerm
	fresh       [][]bool
	consistency []lpRow
}

// historyLayout returns the audit's layout over the history, building it
// on first use.
func (p *blockProblem) historyLayout() *historyLayout {
	if p.histLayout != nil {
		return p.histLayout
	}
	l := &historyLayout{}
	factors := p.factors()
	// Slots: (atom, factor, value of the factor's dimensions), numbered
	// densely; slotOf[r*nf+f] is the slot of inner cell r of an atom in
	// factor f, less the atom's offset.
	nf := len(factors)
	slotOf := make([]int, innerPerAtom*nf)
	perAtom := 0
	for f, mask := range factors {
		dense := map[int]int{}
		for r := range int32(innerPerAtom) {
			_, o, c, a := decodeInner(r)
			code := factorCode(mask, o, c, a)
			if _, ok := dense[code]; !ok {
				dense[code] = perAtom
				perAtom++
			}
			slotOf[int(r)*nf+f] = dense[code]
		}
	}
	nslots := len(p.atoms) * perAtom
	slot := func(i int32, f int) int {
		return int(i)/innerPerAtom*perAtom + slotOf[int(i)%innerPerAtom*nf+f]
	}
	// The slots' data in each release; a slot whose value and records did
	// not change keeps its variable (run is the release its run starts in).
	n := len(p.hist) + 1
	type slotVal struct{ value, records uint64 }
	vals := make([][]slotVal, n)
	run := make([][]int32, n)
	for t := range n {
		vals[t] = make([]slotVal, nslots)
		run[t] = make([]int32, nslots)
		for i, v := range p.valsAt(t) {
			if v.records == 0 && v.value == 0 {
				continue
			}
			for f := range nf {
				s := &vals[t][slot(int32(i), f)]
				s.value += v.value
				s.records += v.records
			}
		}
		for s := range nslots {
			run[t][s] = int32(t)
			if t > 0 && vals[t][s] == vals[t-1][s] {
				run[t][s] = run[t-1][s]
			}
		}
	}
	ids := make([]int32, n*nslots) // +1
	variable := func(t, s int) int {
		k := int(run[t][s])*nslots + s
		if ids[k] == 0 {
			ids[k] = int32(len(l.truth)) + 1
			l.truth = append(l.truth, float64(vals[t][s].value))
		}
		return int(ids[k] - 1)
	}
	rowOf := func(slots []int, t int) []lpTerm {
		terms := make([]lpTerm, len(slots))
		for j, s := range slots {
			terms[j] = lpTerm{variable(t, s), 1}
		}
		slices.SortFunc(terms, func(a, b lpTerm) int { return cmp.Compare(a.v, b.v) })
		return terms
	}
	sameRun := func(slots []int, t int) bool {
		for _, s := range slots {
			if run[t][s] != run[t-1][s] {
				return false
			}
		}
		return true
	}
	// Each cell's slots, in the first factor that holds its table.
	cellSlots := make([][]int, len(p.cells))
	for ci, c := range p.cells {
		if !c.period {
			continue
		}
		f := 0
		for i, mask := range factors {
			if mask&c.key.mask == c.key.mask {
				f = i
				break
			}
		}
		seen := map[int]bool{}
		for _, i := range c.inner {
			if s := slot(i, f); !seen[s] {
				seen[s] = true
				cellSlots[ci] = append(cellSlots[ci], s)
			}
		}
		slices.Sort(cellSlots[ci])
	}
	l.rows = make([][][]lpTerm, n)
	l.fresh = make([][]bool, n)
	for t := range n {
		l.rows[t] = make([][]lpTerm, len(p.cells))
		l.fresh[t] = make([]bool, len(p.cells))
		for ci, slots := range cellSlots {
			if slots == nil {
				continue
			}
			if t > 0 && sameRun(slots, t) {
				l.rows[t][ci] = l.rows[t-1][ci]
				continue
			}
			l.rows[t][ci], l.fresh[t][ci] = rowOf(slots, t), true
		}
	}
	// Consistency: in every atom and release, each pair of factors agrees
	// on what they have in common. A release repeats the rows of the one
	// before it when none of the atom's slots changed.
	type pairSlots struct{ a, b []int }
	var pairs [][]pairSlots // by atom
	for atom := range len(p.atoms) {
		var ps []pairSlots
		for i := range nf {
			for j := i + 1; j < nf; j++ {
				sep := factors[i] & factors[j]
				bySep := map[int]*pairSlots{}
				var keys []int
				for r := range int32(innerPerAtom) {
					_, o, c, a := decodeInner(r)
					sc := factorCode(sep, o, c, a)
					ps, ok := bySep[sc]
					if !ok {
						ps = &pairSlots{}
						bySep[sc] = ps
						keys = append(keys, sc)
					}
					inner := int32(atom*innerPerAtom) + r
					if s := slot(inner, i); !slices.Contains(ps.a, s) {
						ps.a = append(ps.a, s)
					}
					if s := slot(inner, j); !slices.Contains(ps.b, s) {
						ps.b = append(ps.b, s)
					}
				}
				slices.Sort(keys)
				for _, sc := range keys {
					ps = append(ps, *bySep[sc])
				}
			}
		}
		pairs = append(pairs, ps)
	}
	for t := range n {
		for _, ps := range pairs {
			for _, pr := range ps {
				if t > 0 && sameRun(pr.a, t) && sameRun(pr.b, t) {
					continue
				}
				terms := rowOf(pr.a, t)
				for _, term := range rowOf(pr.b, t) {
					terms = append(terms, lpTerm{term.v, -1})
				}
				l.consistency = append(l.consistency, lpRow{mergeTerms(terms), 0, 0})
			}
		}
	}
	p.histLayout = l
	return l
}

// historyAuditModel is auditModelOf over the history: the rows and
// targets of every earlier release, then this release's as auditModelOf
// has them (the published cells that publish says; the withheld cells'
// published bounds when bounds is true).
func (p *blockProblem) historyAuditModel(publish func(*bcell) bool, bounds bool) *auditModel {
	l := p.historyLayout()
	m := &auditModel{truth: l.truth}
	ki := float64(p.k - 1)
	last := len(p.hist)
	seenTarget := map[string]bool{}
	target := func(ci int, terms []lpTerm, truth float64) {
		if len(terms) == 0 {
			return
		}
		if sig := termsSignature(terms); !seenTarget[sig] {
			seenTarget[sig] = true
			m.targets = append(m.targets, auditTarget{ci, terms, truth})
		}
	}
	for t := range last + 1 {
		for ci, c := range p.cells {
			if !c.period {
				continue
			}
			row, v := l.rows[t][ci], p.atVal[t][ci]
			published := t == last && c.published || t < last && p.publishedAtVersion(t, ci)
			// An earlier release that repeats the one before it for this
			// cell (the same row, shown the same way) adds nothing.
			if t > 0 && t < last && !l.fresh[t][ci] && published == p.publishedAtVersion(t-1, ci) && p.hist[t].lower[ci] == p.hist[t-1].lower[ci] {
				continue
			}
			switch {
			case published && t < last:
				m.eq = append(m.eq, auditRow{lpRow{row, float64(v.value), float64(v.value)}, -1})
			case published:
				if publish(c) {
					m.eq = append(m.eq, auditRow{lpRow{row, float64(v.value), float64(v.value)}, ci})
				}
			default:
				lo, hi := 0.0, math.Inf(1)
				switch {
				case t < last && p.hist[t].lower[ci]:
					lo = 1
				case t == last && bounds:
					lo = float64(p.withheldLower(c))
				}
				if small(v, p.k) {
					lo = max(lo, 1)
					if v.value <= p.k-1 {
						hi = ki
					}
					target(ci, row, float64(v.value))
				}
				if lo > 0 || !math.IsInf(hi, 1) {
					m.ineq = append(m.ineq, auditRow{lpRow{row, lo, hi}, -1})
				}
			}
		}
	}
	// The changes of 1..k-1 records between releases in a row, and from
	// a release that published a cell to this one.
	change := func(ci, s, t int) {
		terms := slices.Clone(l.rows[t][ci])
		for _, term := range l.rows[s][ci] {
			terms = append(terms, lpTerm{term.v, -term.coef})
		}
		target(ci, mergeTerms(terms), float64(p.atVal[t][ci].value)-float64(p.atVal[s][ci].value))
	}
	for t := 1; t <= last; t++ {
		for ci, c := range p.cells {
			if n := p.atChanged[t][ci]; c.period && n > 0 && n < p.k {
				change(ci, t-1, t)
			}
		}
	}
	for ci, since := range p.since {
		for _, s := range since {
			change(ci, s, last)
		}
	}
	for _, r := range l.consistency {
		m.eq = append(m.eq, auditRow{r, -1})
	}
	return m
}

// The history in the data file (bucket release_history, keys metric (1) |
// block's first day (4) | seq (8), oldest first). A release is stored against the one before it: the number of inner
// cells of the block (4) and of its cells (4), the count of inner cells
// that changed (4), each as its index (4) and innerVal (24), then two
// bitsets over the cells: published exactly, and withheld with a lower
// bound of 1. The first release of a history is stored against no data.
var bucketReleaseHistory = []byte("release_history")

// encodeHistory writes release cur of the block against prev (nil for
// the first of a history).
func (p *blockProblem) encodeHistory(prev []innerVal, cur histVersion) []byte {
	var changed []int
	for i, v := range cur.inner {
		var before innerVal
		if prev != nil {
			before = prev[i]
		}
		if v != before {
			changed = append(changed, i)
		}
	}
	b := make([]byte, 0, 12+len(changed)*(4+innerValLen)+2*((len(p.cells)+7)/8))
	b = binary.BigEndian.AppendUint32(b, uint32(p.nInner))
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.cells)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(changed)))
	for _, i := range changed {
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		b = append(b, cur.inner[i].bytes()...)
	}
	for _, set := range [][]bool{cur.published, cur.lower} {
		bits := make([]byte, (len(p.cells)+7)/8)
		for i, on := range set {
			if on {
				bits[i/8] |= 1 << (i % 8)
			}
		}
		b = append(b, bits...)
	}
	return b
}

// errHistoryLayout is a history written for another layout of the block
// (another software version's dimensions): it cannot be read, and is no
// history of this block.
var errHistoryLayout = fmt.Errorf("written for another layout of the block")

// decodeHistory reads a release of the block stored against prev.
func (p *blockProblem) decodeHistory(b []byte, prev []innerVal) (histVersion, error) {
	h := histVersion{inner: make([]innerVal, p.nInner), published: make([]bool, len(p.cells)), lower: make([]bool, len(p.cells))}
	if prev != nil {
		copy(h.inner, prev)
	}
	if len(b) < 12 {
		return h, fmt.Errorf("%d bytes", len(b))
	}
	if int(binary.BigEndian.Uint32(b)) != p.nInner || int(binary.BigEndian.Uint32(b[4:])) != len(p.cells) {
		return h, errHistoryLayout
	}
	n := int(binary.BigEndian.Uint32(b[8:]))
	b = b[12:]
	nbits := (len(p.cells) + 7) / 8
	if len(b) != n*(4+innerValLen)+2*nbits {
		return h, fmt.Errorf("%d bytes for %d inner cells and %d cells", len(b), n, len(p.cells))
	}
	for range n {
		i := int(binary.BigEndian.Uint32(b))
		if i >= p.nInner {
			return h, fmt.Errorf("inner cell %d of %d", i, p.nInner)
		}
		h.inner[i] = innerVal{binary.BigEndian.Uint64(b[4:]), binary.BigEndian.Uint64(b[12:]), binary.BigEndian.Uint64(b[20:])}
		b = b[4+innerValLen:]
	}
	for i := range p.cells {
		h.published[i] = b[i/8]&(1<<(i%8)) != 0
		h.lower[i] = b[nbits+i/8]&(1<<(i%8)) != 0
	}
	return h, nil
}

// historyPrefix is the key prefix of the history of metric's block that
// starts on day from.
func historyPrefix(metric uint8, from uint32) []byte {
	return append([]byte{metric}, u32(from)...)
}

// readHistory reads the history of the block of p from tx, oldest first.
// It returns nil when there is none to protect against: no history
// bucket (a file written before it was kept), no entries, or entries
// written for another layout.
func (p *blockProblem) readHistory(tx *bolt.Tx) ([]histVersion, error) {
	b := tx.Bucket(bucketReleaseHistory)
	if b == nil {
		return nil, nil
	}
	prefix := historyPrefix(p.metric, p.win.From)
	var hist []histVersion
	var prev []innerVal
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
		h, err := p.decodeHistory(v, prev)
		if err == errHistoryLayout {
			return nil, nil
		}
		if err != nil {
			return nil, &CorruptError{Problem: fmt.Sprintf("release history %x: %v", k, err)}
		}
		hist = append(hist, h)
		prev = h.inner
	}
	return hist, nil
}

// historyMatches reports whether the last release of hist is the release
// the block has (its data old and cells base): otherwise releases were
// made without recording them (by software that kept no history), and the
// history is no history of the block.
func (p *blockProblem) historyMatches(hist []histVersion, old map[innerKey]innerVal, base map[relKey]relCell) bool {
	if len(hist) == 0 {
		return false
	}
	h := hist[len(hist)-1]
	oldV := make([]innerVal, p.nInner)
	for k, v := range old {
		oldV[p.innerIndex(k)] = v
	}
	if !slices.Equal(oldV, h.inner) {
		return false
	}
	for ci, c := range p.cells {
		if c.period && base[c.key].exact() != h.published[ci] {
			return false
		}
	}
	return true
}

// currentVersion is this release of the block as its history keeps it,
// from the release cells result returned.
func (p *blockProblem) currentVersion(result map[relKey]relCell) histVersion {
	h := histVersion{inner: p.nowV, published: make([]bool, len(p.cells)), lower: make([]bool, len(p.cells))}
	for ci, c := range p.cells {
		if !c.period {
			continue
		}
		h.published[ci] = c.published
		if rc, ok := result[c.key]; ok && !c.published && rc.suppressed && rc.lower >= 1 {
			h.lower[ci] = true
		}
	}
	return h
}
