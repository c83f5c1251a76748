package node

import (
	"cmp"
	"maps"
	"math"
	"math/bits"
	"slices"

	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
)

// blockProblem is the release of one metric over one block of time: its
// cells, the inner cells under each, and the values before and after the
// change being released.
type blockProblem struct {
	metric uint8
	win    periods.Window
	k      uint64
	// dominance, when not 0, is the share (percent) of a cell's quantity one
	// record may hold before the cell is suppressed.
	dominance uint64
	atoms     []uint32 // first days, sorted
	// periods are the release periods of the block.
	periods []periods.Window
	cells   []*bcell
	index   map[relKey]int
	nInner  int
	// based is true when an earlier release of the same policy exists: its
	// published cells are known to everyone, and the change is protected too.
	based bool
	// unchanged[i] is true when inner cell i is the same before and after
	// the change.
	unchanged []bool
	// nowV and oldV are the inner cells after and before the change.
	nowV, oldV []innerVal
	// audited is the layout of the audit's LPs, built on first use.
	audited *auditLayout
	// unaudited is true when the block was too large to audit.
	unaudited bool

	// hist are the block's earlier releases, oldest first, when the
	// release is protected against all of them (release_history.go);
	// atVal[t][ci] and atChanged[t][ci] are cell ci's data in release t
	// (len(hist): this one) and the records changed under it since
	// release t-1; histLayout is the audit's layout over them.
	hist      []histVersion
	atVal     [][]innerVal
	atChanged [][]uint64
	// since[ci] are the earlier releases that published cell ci exactly
	// and from which its change is 1..k-1 records (smallSince).
	since      [][]int
	histLayout *historyLayout
	// pinnedBefore are the audit's targets (by termsSignature) that the
	// earlier releases and knowledge pin with none of this release's
	// cells: pinned whatever it publishes, they are not the audit's to fix.
	pinnedBefore map[string]bool
}

// bcell is one cell of a block: a release cell, or a hidden atom's cell.
type bcell struct {
	key    relKey
	period bool    // a release period (published or suppressed); false: a hidden atom
	inner  []int32 // the inner cells under it
	days   uint32
	now    innerVal // the data being released
	old    innerVal // the data of the earlier release
	// changed is how many records under the cell differ from the earlier
	// release's data.
	changed uint64
	base    relCell // the earlier release's cell
	// barred is true when the earlier release withheld the cell or held it
	// pending. Protected against that release alone it stays so, or a
	// later answer would reveal it; only a release protected against the
	// block's whole history publishes it again (release_history.go).
	barred    bool
	published bool
}

func (p *blockProblem) atomWindow(i int) periods.Window {
	to := p.win.To
	if i+1 < len(p.atoms) {
		to = p.atoms[i+1] - 1
	}
	return periods.Window{From: p.atoms[i], To: to}
}

// newBlockProblem lays out the cells of metric over the block win.
func newBlockProblem(cal *calendar, masks []uint8, metric uint8, win periods.Window, k, dominance uint64) *blockProblem {
	p := &blockProblem{metric: metric, win: win, k: k, dominance: dominance, index: map[relKey]int{}}
	for m := records.MonthOf(win.From); records.FirstDayOfMonth(m) <= win.To; m++ {
		p.atoms = append(p.atoms, records.FirstDayOfMonth(m))
	}
	for _, c := range cal.cuts {
		if c >= win.From && c <= win.To {
			p.atoms = append(p.atoms, c)
		}
	}
	slices.Sort(p.atoms)
	p.atoms = slices.Compact(p.atoms)
	p.nInner = len(p.atoms) * nOffences * nChannels * nVictimAges

	type window struct {
		w      periods.Window
		period bool
	}
	var windows []window
	isPeriod := map[periods.Window]bool{}
	for _, per := range cal.Within(win) {
		w := periods.Window{From: per.From, To: per.To}
		windows = append(windows, window{w, true})
		isPeriod[w] = true
		p.periods = append(p.periods, w)
	}
	for i := range p.atoms {
		if w := p.atomWindow(i); !isPeriod[w] {
			windows = append(windows, window{w, false})
		}
	}
	for _, w := range windows {
		var atoms []int
		for i := range p.atoms {
			if a := p.atomWindow(i); a.From >= w.w.From && a.To <= w.w.To {
				atoms = append(atoms, i)
			}
		}
		for _, mask := range masks {
			no, nc, na := sizes(mask)
			for o := range no {
				for c := range nc {
					for a := range na {
						key := relKey{metric, w.w.From, w.w.To, mask, uint8(o), uint8(c), uint8(a)}
						cell := &bcell{key: key, period: w.period, days: w.w.Days()}
						for _, ai := range atoms {
							for io := range nOffences {
								for ic := range nChannels {
									for ia := range nVictimAges {
										if po, pc, pa := project(mask, uint8(io), uint8(ic), uint8(ia)); po == uint8(o) && pc == uint8(c) && pa == uint8(a) {
											cell.inner = append(cell.inner, int32(((ai*nOffences+io)*nChannels+ic)*nVictimAges+ia))
										}
									}
								}
							}
						}
						p.index[key] = len(p.cells)
						p.cells = append(p.cells, cell)
					}
				}
			}
		}
	}
	return p
}

// innerIndex returns the inner cell of k in the block.
func (p *blockProblem) innerIndex(k innerKey) int {
	ai, _ := slices.BinarySearch(p.atoms, k.atom)
	return ((ai*nOffences+int(k.off))*nChannels+int(k.ch))*nVictimAges + int(k.age)
}

// fill sums the inner cells of now and old (the earlier release's data,
// nil without one) into the cells, and notes what the earlier release
// published (base, nil without one).
func (p *blockProblem) fill(now, old map[innerKey]innerVal, base map[relKey]relCell) {
	nowV := make([]innerVal, p.nInner)
	oldV := make([]innerVal, p.nInner)
	for k, v := range now {
		nowV[p.innerIndex(k)] = v
	}
	for k, v := range old {
		oldV[p.innerIndex(k)] = v
	}
	p.nowV, p.oldV = nowV, oldV
	p.based = base != nil
	p.unchanged = make([]bool, p.nInner)
	for i := range p.nInner {
		p.unchanged[i] = nowV[i] == oldV[i]
	}
	for _, c := range p.cells {
		for _, i := range c.inner {
			c.now.add(nowV[i])
			c.old.add(oldV[i])
			c.changed += changedRecords(oldV[i], nowV[i])
		}
		if p.based && c.period {
			c.base = base[c.key] // a cell not stored was published as 0
			c.barred = !c.base.exact()
		}
	}
}

// changedRecords is how many records an inner cell's change touches, at
// least: the difference in records, or one when only a quantity moved.
func changedRecords(old, now innerVal) uint64 {
	switch {
	case now.records > old.records:
		return now.records - old.records
	case old.records > now.records:
		return old.records - now.records
	case old.value != now.value:
		return 1
	}
	return 0
}

// primary reports whether a cell's data must not be published: 1..k-1
// contributing records, or one record dominating it.
func (p *blockProblem) primary(v innerVal) bool {
	if v.records == 0 {
		return false
	}
	return v.records < p.k || (p.dominance > 0 && v.maxQ*100 > p.dominance*v.value)
}

// protectedRow is a row that must stay outside the span of the published
// cells, and what it stands for.
type protectedRow struct {
	row   vec
	cell  int  // the cell it protects (for virtual sums: the first one)
	delta bool // a change between the releases rather than a value
	// earlier is true for a row of an earlier release than this one.
	earlier bool
}

// protect decides which cells are published: every cell of 1..k-1 records
// (now, or changed since the earlier release) and every hidden or barred
// cell stays out of the span of the published ones, and so does the sum of
// the withheld cells around each of them whenever a published cell contains
// them, so that bounds cannot pin them either (GaussSuppression's "singleton"
// and sub-sum problem: two withheld siblings under a known total that must
// sum to 2 are both 1). It returns how many protected rows an earlier
// release had already exposed.
func (p *blockProblem) protect() (exposed int) {
	// The columns: inner cells before the change (x) and after it (y),
	// except those a published 0 shows to be empty.
	zeroOld := make([]bool, p.nInner)
	zeroNow := make([]bool, p.nInner)
	for _, c := range p.cells {
		if !c.period || c.barred {
			continue
		}
		if p.based && c.old.value == 0 {
			for _, i := range c.inner {
				zeroOld[i] = true
			}
		}
		if c.now.value == 0 {
			for _, i := range c.inner {
				zeroNow[i] = true
			}
		}
	}
	xcol := make([]int32, p.nInner)
	ycol := make([]int32, p.nInner)
	cols := int32(0)
	for i := range p.nInner {
		xcol[i] = -1
		if p.based && !zeroOld[i] {
			xcol[i], cols = cols, cols+1
		}
	}
	// An inner cell no write touched is one unknown before and after: a
	// worst-case attacker knows what the write was about.
	for i := range p.nInner {
		ycol[i] = -1
		switch {
		case zeroNow[i]:
		case p.based && p.unchanged[i] && xcol[i] >= 0:
			ycol[i] = xcol[i]
		default:
			ycol[i], cols = cols, cols+1
		}
	}
	rowOf := func(inner []int32, x, y bool) vec {
		var r vec
		if x {
			for _, i := range inner {
				if xcol[i] >= 0 {
					r = append(r, entry{xcol[i], modulus - 1})
				}
			}
		}
		if y {
			for _, i := range inner {
				if ycol[i] >= 0 {
					r = append(r, entry{ycol[i], 1})
				}
			}
		}
		// An unchanged cell's column stands for it before and after:
		// add up its coefficients (in a change they cancel).
		return merged(r)
	}

	// Candidates: what the earlier release published (on x, forced), then
	// this release's cells, totals and long periods first, large values
	// before small ones, so that those stay exact.
	var cands []candidate
	if p.based {
		for _, c := range p.cells {
			if c.period && !c.barred {
				cands = append(cands, candidate{row: rowOf(c.inner, true, false), forced: true})
			}
		}
	}
	first := len(cands)
	order := p.candidateOrder()
	for _, i := range order {
		c := p.cells[i]
		cands = append(cands, candidate{row: rowOf(c.inner, false, true), barred: c.barred || p.primary(c.now)})
	}

	var prot []protectedRow
	for i, c := range p.cells {
		if p.primary(c.now) || c.barred {
			prot = append(prot, protectedRow{row: rowOf(c.inner, false, true), cell: i})
		}
		if p.based && c.changed > 0 && c.changed < p.k {
			prot = append(prot, protectedRow{row: rowOf(c.inner, true, true), cell: i, delta: true})
		}
	}

	exposed, _ = p.settle(cols, cands, first, order, prot, func(inner []int32) vec { return rowOf(inner, false, true) }, false)
	return exposed
}

// settle runs the elimination over cands (this release's cells are
// cands[first:], in order's order) until the pattern is stable: the sums
// of withheld cells it needs are protected, and the audit finds nothing
// it can fix. rowNow is a cell's row in this release. Without
// convergence nothing new is published; when strict, settle instead
// reports failure (ok false) as soon as it cannot converge, the audit
// cannot judge the block, or a target is pinned that withholding cannot
// unpin: the caller then protects the block the plain way.
func (p *blockProblem) settle(cols int32, cands []candidate, first int, order []int, prot []protectedRow, rowNow func([]int32) vec, strict bool) (exposed int, ok bool) {
	// The sums of withheld cells that need protecting depend on which
	// cells are withheld, so protect and look again until the sums the
	// pattern needs were all protected in the run that made it. The first
	// rounds protect only what the last pattern needed (sums an earlier
	// pattern needed may withhold cells for nothing); later rounds keep
	// every sum seen, which converges. Without convergence nothing new is
	// published.
	run := func(virtuals map[string]protectedRow) {
		rows := make([]vec, 0, len(prot)+len(virtuals))
		for _, pr := range prot {
			rows = append(rows, pr.row)
		}
		for _, sig := range slices.Sorted(maps.Keys(virtuals)) {
			rows = append(rows, virtuals[sig].row)
		}
		published, exp := suppress(int(cols), cands, rows)
		for j, i := range order {
			p.cells[i].published = published[first+j]
		}
		exposed = len(exp)
	}
	barAll := func(virtuals map[string]protectedRow) {
		for i := range cands {
			cands[i].barred = cands[i].barred || (!cands[i].forced && len(cands[i].row) > 0)
		}
		run(virtuals)
	}
	virtuals := map[string]protectedRow{}
	for round := 0; ; round++ {
		run(virtuals)
		needed := p.neededSums(prot, rowNow)
		missing := false
		for sig := range needed {
			if _, ok := virtuals[sig]; !ok {
				missing = true
			}
		}
		if !missing {
			break
		}
		if round == 12 {
			if strict {
				return exposed, false
			}
			barAll(virtuals)
			break
		}
		if round < 4 {
			virtuals = needed
		} else {
			maps.Copy(virtuals, needed)
		}
	}

	// Then the audit (release_audit.go): while the attacker's LP pins a
	// target this release could protect, withhold the published cell it
	// names and eliminate again, with the sums the pattern above needed
	// (the audit, not the sums, answers for the new pattern). Each round
	// withholds at least one more cell, so it ends; past auditRounds
	// nothing new is published.
	candOf := make(map[int]int, len(order))
	for j, i := range order {
		candOf[i] = first + j
	}
	// A round that publishes no cell the round before did not (the
	// usual case: it withholds more) only widens every target's range,
	// so the targets the audit found unpinned then stay unpinned.
	var unpinned map[string]bool
	var before []bool
	for round := 0; ; round++ {
		var skip map[string]bool
		if before != nil && !slices.ContainsFunc(order, func(i int) bool { return p.cells[i].published && !before[i] }) {
			skip = unpinned
		}
		before = make([]bool, len(p.cells))
		for _, i := range order {
			before[i] = p.cells[i].published
		}
		withhold, _, stuck, checked := p.audit(skip)
		unpinned = checked
		if strict && (stuck > 0 || p.unaudited) {
			return exposed, false
		}
		if len(withhold) == 0 {
			break
		}
		if round == auditRounds {
			if strict {
				return exposed, false
			}
			barAll(virtuals)
			break
		}
		for _, ci := range withhold {
			cands[candOf[ci]].barred = true
		}
		run(virtuals)
	}
	return exposed, true
}

// candidateOrder returns the release periods' cells in the order the
// elimination takes them: totals and long periods first, large values
// before small ones, so that those stay exact.
func (p *blockProblem) candidateOrder() []int {
	order := make([]int, 0, len(p.cells))
	for i, c := range p.cells {
		if c.period {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := p.cells[a], p.cells[b]
		return cmp.Or(cmp.Compare(bits.OnesCount8(ca.key.mask), bits.OnesCount8(cb.key.mask)),
			cmp.Compare(cb.days, ca.days), cmp.Compare(cb.now.value, ca.now.value))
	})
	return order
}

// auditRounds bounds the rounds of audit and elimination.
const auditRounds = 40

// neededSums returns, keyed by the cells they add, the sums of withheld
// cells the current pattern must keep out of the published span: for each
// primary, the withheld cells beside it under a published cell, when their
// known sum would pin it, alone or with a singleton's record known.
func (p *blockProblem) neededSums(prot []protectedRow, rowNow func(inner []int32) vec) map[string]protectedRow {
	needed := map[string]protectedRow{}
	for _, pr := range prot {
		if pr.delta || pr.earlier || !p.primary(p.cells[pr.cell].now) {
			continue
		}
		for _, group := range p.withheldAround(pr.cell) {
			if !p.pinnedBySum(pr.cell, group) && !p.unlockedBySingleton(pr.cell, group) {
				continue
			}
			sig := string(groupSignature(group))
			if _, ok := needed[sig]; ok {
				continue
			}
			var inner []int32
			for _, ci := range group {
				inner = append(inner, p.cells[ci].inner...)
			}
			needed[sig] = protectedRow{row: rowNow(inner), cell: group[0]}
		}
	}
	return needed
}

// pinnedBySum reports whether knowing the sum of group (withheld cells, ci
// among them) would pin ci's value to fewer than three values (two when
// k = 3): every withheld cell is known to hold at least 1, and a primary of
// unit quantities at most k-1 (a worst-case attacker knows which cells are
// primary). It is the one-group relaxation of the attacker's linear program.
func (p *blockProblem) pinnedBySum(ci int, group []int) bool {
	return p.narrowedBySum(ci, group, min(2, p.k-2))
}

// narrowedBySum reports whether knowing the sum of group leaves ci fewer
// than width+1 values (see pinnedBySum).
func (p *blockProblem) narrowedBySum(ci int, group []int, width uint64) bool {
	// What is known of each withheld cell: a primary or a cell withheld
	// for the first time holds at least one record (its lower bound says
	// so); a hidden atom or a cell withheld before may be empty. A primary
	// of unit quantities holds at most k-1.
	least := func(c *bcell) uint64 {
		if p.primary(c.now) || (c.period && !c.barred) {
			return 1
		}
		return 0
	}
	most := func(c *bcell) uint64 {
		if p.primary(c.now) && c.now.value <= p.k-1 {
			return p.k - 1
		}
		return math.MaxUint64
	}
	var sum, othersLeast, othersMost uint64
	for _, gi := range group {
		c := p.cells[gi]
		sum += c.now.value
		if gi != ci {
			othersLeast += least(c)
			othersMost = satAdd(othersMost, most(c))
		}
	}
	if sum < othersLeast {
		return true
	}
	hi := min(most(p.cells[ci]), sum-othersLeast)
	lo := least(p.cells[ci])
	if othersMost < sum {
		lo = max(lo, sum-othersMost)
	}
	return hi < lo+width
}

// unlockedBySingleton reports whether someone who knows one record, the
// only one of a withheld cell beside ci (its ministry's own case, or a case
// in the news), would learn ci from the group's known sum: when ci is all
// that is left, or the sum of what is left pins it to one value
// (GaussSuppression's singleton problem).
func (p *blockProblem) unlockedBySingleton(ci int, group []int) bool {
	for _, gi := range group {
		if gi == ci || p.cells[gi].now.records != 1 {
			continue
		}
		rest := slices.DeleteFunc(slices.Clone(group), func(i int) bool { return i == gi })
		if len(rest) == 1 || p.narrowedBySum(ci, rest, 1) {
			return true
		}
	}
	return false
}

func groupSignature(g []int) []byte {
	b := make([]byte, 0, 4*len(g))
	for _, i := range g {
		b = append(b, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	}
	return b
}

// withheldAround returns, for each published cell that contains cell ci
// directly, the withheld cells beside ci under it (ci included) when there
// are two or more of them and at least one published: their sum is what the
// published cell minus its published parts reveals.
func (p *blockProblem) withheldAround(ci int) [][]int {
	c := p.cells[ci]
	var groups [][]int
	consider := func(parent relKey, siblings []relKey) {
		pi, ok := p.index[parent]
		if !ok || !p.cells[pi].published {
			return
		}
		var withheld []int
		pub := 0
		for _, sk := range siblings {
			si, ok := p.index[sk]
			if !ok {
				continue
			}
			if p.cells[si].published {
				pub++
			} else {
				withheld = append(withheld, si)
			}
		}
		if pub > 0 && len(withheld) >= 2 {
			slices.Sort(withheld)
			groups = append(groups, withheld)
		}
	}
	// Siblings in the same table and window, under the table without one
	// of its dimensions.
	for _, d := range []uint8{maskOffence, maskChannel, maskVictimAge} {
		if c.key.mask&d == 0 {
			continue
		}
		parent := c.key
		parent.mask &^= d
		parent.off, parent.ch, parent.age = project(parent.mask, c.key.off, c.key.ch, c.key.age)
		var sibs []relKey
		no, nc, na := sizes(d)
		for o := range no {
			for ch := range nc {
				for a := range na {
					s := c.key
					switch d {
					case maskOffence:
						s.off = uint8(o)
					case maskChannel:
						s.ch = uint8(ch)
					case maskVictimAge:
						s.age = uint8(a)
					}
					sibs = append(sibs, s)
				}
			}
		}
		consider(parent, sibs)
	}
	// Siblings in time, under each release period that contains the cell's
	// window: the whole months inside it and the hidden atoms of the rest.
	for _, q := range p.periods {
		if q.From > c.key.from || q.To < c.key.to || (q.From == c.key.from && q.To == c.key.to) {
			continue
		}
		parent := c.key
		parent.from, parent.to = q.From, q.To
		var sibs []relKey
		for i := range p.atoms {
			a := p.atomWindow(i)
			if a.From < q.From || a.To > q.To {
				continue
			}
			m := records.MonthOf(a.From)
			mw := periods.Window{From: records.FirstDayOfMonth(m), To: records.FirstDayOfMonth(m+1) - 1}
			w := a
			if mw.From >= q.From && mw.To <= q.To {
				if a.From != mw.From {
					continue // the month stands for it
				}
				w = mw
			}
			s := c.key
			s.from, s.to = w.From, w.To
			sibs = append(sibs, s)
		}
		consider(parent, sibs)
	}
	// What a published period leaves once its published sub-periods apart
	// from the cell's window are taken out: the cell and the months or
	// atoms of the rest (the operation minus phase 1 is phase 2 and the
	// 31 May between them).
	self := slices.Index(p.cells, c)
	for _, q := range p.periods {
		if !p.around(q, c.key) || !p.publishedAt(c.key, q) {
			continue
		}
		rest, taken := p.rest(c.key, q, []periods.Window{{From: c.key.from, To: c.key.to}})
		if taken == 0 {
			continue
		}
		if group := append([]int{self}, rest...); len(group) >= 2 {
			slices.Sort(group)
			groups = append(groups, group)
		}
	}
	// The same across a table: a period s inside q beside the cell's
	// window whose cell is withheld, but whose total without dimension d
	// is published, with every withheld sibling x of it published over q.
	// The total of s less its published siblings is the sum of the
	// withheld ones, and each of q's cells of them less s is what q leaves
	// of it: so the rest of q, over the cell's value and those siblings',
	// sums to the published cells (the operation's 12-14 and 15-17 less
	// phase 1's two withheld ones leave phase 2 and 31 May of both).
	for _, d := range []uint8{maskOffence, maskChannel, maskVictimAge} {
		if c.key.mask&d == 0 {
			continue
		}
		for _, q := range p.periods {
			if !p.around(q, c.key) || !p.publishedAt(c.key, q) {
				continue
			}
			for _, sw := range p.periods {
				if sw.From < q.From || sw.To > q.To || sw == q || !(sw.To < c.key.from || sw.From > c.key.to) {
					continue
				}
				sk := c.key
				sk.from, sk.to = sw.From, sw.To
				si, ok := p.index[sk]
				if !ok || p.cells[si].published {
					continue
				}
				total := sk
				total.mask &^= d
				total.off, total.ch, total.age = project(total.mask, sk.off, sk.ch, sk.age)
				if ti, ok := p.index[total]; !ok || !p.cells[ti].published {
					continue
				}
				group := []int{self}
				rest, _ := p.rest(c.key, q, []periods.Window{{From: c.key.from, To: c.key.to}, sw})
				group = append(group, rest...)
				ok = true
				for _, x := range p.siblings(sk, d) {
					if x == sk || p.cells[p.index[x]].published {
						continue
					}
					if !p.publishedAt(x, q) {
						ok = false
						break
					}
					rest, _ := p.rest(x, q, []periods.Window{sw})
					group = append(group, rest...)
				}
				if ok && len(group) >= 2 {
					slices.Sort(group)
					groups = append(groups, group)
				}
			}
		}
	}
	return groups
}

// around reports whether release period q contains the window of k and
// is not it.
func (p *blockProblem) around(q periods.Window, k relKey) bool {
	return q.From <= k.from && q.To >= k.to && (q.From != k.from || q.To != k.to)
}

// publishedAt reports whether the cell of k over window w is published.
func (p *blockProblem) publishedAt(k relKey, w periods.Window) bool {
	k.from, k.to = w.From, w.To
	i, ok := p.index[k]
	return ok && p.cells[i].published
}

// siblings returns the cells of k's table and window that differ from k
// in dimension d only (k among them).
func (p *blockProblem) siblings(k relKey, d uint8) []relKey {
	var out []relKey
	no, nc, na := sizes(d)
	for o := range no {
		for ch := range nc {
			for a := range na {
				s := k
				switch d {
				case maskOffence:
					s.off = uint8(o)
				case maskChannel:
					s.ch = uint8(ch)
				case maskVictimAge:
					s.age = uint8(a)
				}
				if _, ok := p.index[s]; ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// rest returns the withheld cells of k's value that period q leaves once
// the windows out and the largest published periods of k beside them are
// taken out: the hidden atoms and withheld months of the rest, and how
// many published periods were taken.
func (p *blockProblem) rest(k relKey, q periods.Window, out []periods.Window) (withheld []int, taken int) {
	apart := func(a periods.Window, ws []periods.Window) bool {
		for _, w := range ws {
			if !(a.To < w.From || a.From > w.To) {
				return false
			}
		}
		return true
	}
	var take []periods.Window
	for _, sub := range p.periods {
		if sub.From < q.From || sub.To > q.To || sub == q || !apart(sub, out) || !apart(sub, take) {
			continue
		}
		if p.publishedAt(k, sub) {
			take = append(take, sub)
		}
	}
	for i := range p.atoms {
		a := p.atomWindow(i)
		if a.From < q.From || a.To > q.To || !apart(a, out) || !apart(a, take) {
			continue
		}
		ak := k
		ak.from, ak.to = a.From, a.To
		if ai, ok := p.index[ak]; ok && !p.cells[ai].published {
			withheld = append(withheld, ai)
		}
	}
	return withheld, len(take)
}

// result returns the release cells of the block to store: every cell that
// is not a published 0. A withheld cell's bounds hold its true value and
// say no more than the published cells do: at most the smallest published
// cell that contains it.
func (p *blockProblem) result() map[relKey]relCell {
	out := map[relKey]relCell{}
	for _, c := range p.cells {
		if !c.period {
			continue
		}
		if c.published {
			if c.now.value > 0 {
				out[c.key] = relCell{value: c.now.value, lower: c.now.value, upper: c.now.value}
			}
			continue
		}
		// A cell withheld for the first time holds records (a 0 is
		// published); one an earlier release withheld may have emptied.
		rc := relCell{suppressed: true, lower: 1, upper: p.upperBound(c)}
		if c.barred {
			rc.lower = 0
		}
		// A cell an earlier release published with a value keeps that
		// value, marked pending, while its change cannot be published.
		switch {
		case p.based && c.base.exact() && c.base.value > 0:
			rc = relCell{value: c.base.value, pending: true, upper: rc.upper}
		case p.based && c.base.pending:
			rc = relCell{value: c.base.value, pending: true, upper: rc.upper}
		}
		out[c.key] = rc
	}
	return out
}

// upperBound is the smallest published value of a cell that contains c:
// the cells of the periods around c's window, in the tables whose
// dimensions are among c's.
func (p *blockProblem) upperBound(c *bcell) uint64 {
	up := uint64(math.MaxUint64)
	for _, q := range p.periods {
		if q.From > c.key.from || q.To < c.key.to {
			continue
		}
		for mask := range uint8(8) {
			if mask&^c.key.mask != 0 {
				continue
			}
			k := c.key
			k.from, k.to, k.mask = q.From, q.To, mask
			k.off, k.ch, k.age = project(mask, c.key.off, c.key.ch, c.key.age)
			if i, ok := p.index[k]; ok && p.cells[i].published {
				up = min(up, p.cells[i].now.value)
			}
		}
	}
	return up
}
