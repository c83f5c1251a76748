package attacker

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The dimensions of an inner cell besides time and metric, in a fixed order.
const (
	dOffence = iota
	dChannel
	dAge
	nDims
)

var (
	dimSize  = [nDims]int{len(records.Offences()), len(records.Channels()), len(records.VictimAges())}
	dimProto = [nDims]fedreportv1.Dimension{
		fedreportv1.Dimension_DIMENSION_OFFENCE,
		fedreportv1.Dimension_DIMENSION_CHANNEL,
		fedreportv1.Dimension_DIMENSION_VICTIM_AGE,
	}
)

// dimValueName is the name a cell shows for value v of dimension d.
func dimValueName(d, v int) string {
	switch d {
	case dOffence:
		return records.OffenceName(fedreportv1.Offence(v))
	case dChannel:
		return records.ChannelName(fedreportv1.Channel(v))
	}
	return records.VictimAgeName(fedreportv1.VictimAge(v))
}

// parseDimValue is the inverse of dimValueName. It parses exactly the names
// cells show: an empty name is not "unknown" but a missing dimension.
func parseDimValue(d int, s string) (int, bool) {
	for v := range dimSize[d] {
		if dimValueName(d, v) == s {
			return v, true
		}
	}
	return 0, false
}

// dimSet is a set of dimensions (bit d for dimension d): what an answer
// groups by besides month, or a factor of the model.
type dimSet uint8

func (s dimSet) has(d int) bool { return s&(1<<d) != 0 }

// size is how many value combinations s has (1 for the empty set).
func (s dimSet) size() int {
	n := 1
	for d := range nDims {
		if s.has(d) {
			n *= dimSize[d]
		}
	}
	return n
}

// index numbers the values of s's dimensions in vals.
func (s dimSet) index(vals [nDims]int) int {
	i := 0
	for d := range nDims {
		if s.has(d) {
			i = i*dimSize[d] + vals[d]
		}
	}
	return i
}

// values is the inverse of index; dimensions outside s are 0.
func (s dimSet) values(i int) [nDims]int {
	var vals [nDims]int
	for d := nDims - 1; d >= 0; d-- {
		if s.has(d) {
			vals[d] = i % dimSize[d]
			i /= dimSize[d]
		}
	}
	return vals
}

// cellDef is what a disclosed cell is the sum of, whatever the version.
type cellDef struct {
	metric   fedreportv1.Metric
	from, to uint32 // days, inclusive
	group    dimSet
	vals     [nDims]int // of the dimensions in group
}

func (c cellDef) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s..%s", records.MetricName(c.metric), records.DateString(c.from), records.DateString(c.to))
	for d := range nDims {
		if c.group.has(d) {
			fmt.Fprintf(&b, " %s=%s", records.DimensionName(dimProto[d]), dimValueName(d, c.vals[d]))
		}
	}
	return b.String()
}

// matches reports whether record r (day) falls in c.
func (c cellDef) matches(r *fedreportv1.Record, day uint32) bool {
	if r.GetMetric() != c.metric || day < c.from || day > c.to {
		return false
	}
	vals := recordValues(r)
	for d := range nDims {
		if c.group.has(d) && vals[d] != c.vals[d] {
			return false
		}
	}
	return true
}

func recordValues(r *fedreportv1.Record) [nDims]int {
	return [nDims]int{int(r.GetOffence()), int(r.GetChannel()), int(r.GetVictimAge())}
}

// observation is one disclosed cell: lo <= sum of its inner cells <= hi.
type observation struct {
	def     cellDef
	version int // index into model.versions
	lo, hi  float64
	// hidden is true for a cell that is suppressed or pending: its value
	// is a target.
	hidden bool
	seqs   []uint64
}

// innerKey names an inner cell of one version: in atom, the value val of
// factor (the dimensions of one margin the model keeps).
type innerKey struct {
	metric fedreportv1.Metric
	atom   int
	factor int
	val    int
}

type varKey struct {
	version int
	innerKey
}

type atomKey struct {
	version int
	metric  fedreportv1.Metric
	atom    int
}

// separator ties factor child to factor parent in every atom: their sums
// over the dimensions outside dims agree.
type separator struct {
	child, parent int
	dims          dimSet
}

// term is coef times unknown v.
type term struct {
	v    int
	coef float64
}

// row is lo <= sum of terms <= hi; hi may be +Inf.
type row struct {
	terms  []term
	lo, hi float64
	what   string
}

// target is a linear form whose range the attacker computes.
type target struct {
	kind    Kind
	what    string // "v3 arrests ..." or "v2→v3 change of arrests ..."
	terms   []term
	records int // by the truth; -1 unknown
	truth   float64
	known   bool // truth is known
	seqs    []uint64
	// constant is the part of the target fixed by the log (set by the
	// solver's presolve).
	constant float64
}

func (t *target) finding(v int64) Finding {
	f := Finding{Kind: t.kind, Value: v, Records: t.records, Entries: t.seqs, what: t.what}
	var b strings.Builder
	b.WriteString(t.what)
	if t.kind == KindChange {
		fmt.Fprintf(&b, " pinned to %+d", v)
	} else {
		fmt.Fprintf(&b, " pinned to %d", v)
	}
	var notes []string
	switch {
	case t.records == 1 && t.kind == KindChange:
		notes = append(notes, "1 record changed")
	case t.records >= 0 && t.kind == KindChange:
		notes = append(notes, fmt.Sprintf("%d records changed", t.records))
	case t.records == 1:
		notes = append(notes, "1 record")
	case t.records >= 0:
		notes = append(notes, fmt.Sprintf("%d records", t.records))
	}
	if len(t.seqs) > 0 {
		w := "entry "
		if len(t.seqs) > 1 {
			w = "entries "
		}
		notes = append(notes, w+seqList(t.seqs))
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
	}
	f.Description = b.String()
	return f
}

// seqList writes disclosure log seqs as "4, 9".
func seqList(seqs []uint64) string {
	s := make([]string, len(seqs))
	for i, q := range seqs {
		s[i] = fmt.Sprint(q)
	}
	return strings.Join(s, ", ")
}

// cellTruth is an inner cell's content by the ground truth.
type cellTruth struct {
	value float64
	ids   uint64 // an order-free hash of (record_id, quantity) of its records
}

// model is the attacker's picture of the node: unknowns, constraints and
// targets, before presolve.
type model struct {
	k    uint32
	side SideKnowledge
	// prior is true for the model of what the side knowledge alone
	// implies: every disclosed value is forgotten, only the bounds side
	// knowledge gives (a primary cell is 1..k-1) are kept.
	prior bool

	versions []uint64 // sorted data versions in the log
	metrics  []fedreportv1.Metric
	cuts     []uint32 // atom i is days cuts[i]..cuts[i+1]-1
	factors  []dimSet
	seps     []separator
	obs      []*observation

	// truth[v] holds the records of version v by metric, sorted by day,
	// and the content of each inner cell; nil without Truth.
	truth []*versionTruth

	vars     map[varKey]int
	varTruth []float64
	touched  map[atomKey]bool
	queue    []atomKey
	rows     []row
	targets  []*target
	skipped  int
	matchers map[[2]int][][]int // (factor, group<<16|value) -> factor values
}

type versionTruth struct {
	byMetric map[fedreportv1.Metric][]dated
	cells    map[innerKey]cellTruth
}

type dated struct {
	day uint32
	r   *fedreportv1.Record
}

func buildModel(entries []*fedreportv1.DisclosureEntry, k uint32, side SideKnowledge, prior bool) (*model, error) {
	m := &model{
		k:        k,
		side:     side,
		prior:    prior,
		vars:     map[varKey]int{},
		touched:  map[atomKey]bool{},
		matchers: map[[2]int][][]int{},
	}
	if err := m.readLog(entries); err != nil {
		return nil, err
	}
	if err := m.readTruth(); err != nil {
		return nil, err
	}
	m.disclosureRows()
	m.cellTargets()
	m.changeTargets()
	m.consistencyRows()
	return m, nil
}

// readLog turns every entry into observations and derives the atoms and
// factors from them.
func (m *model) readLog(entries []*fedreportv1.DisclosureEntry) error {
	type obsKey struct {
		def     cellDef
		version uint64
	}
	byKey := map[obsKey]*observation{}
	var order []obsKey
	versionSet := map[uint64]bool{}
	metricSet := map[fedreportv1.Metric]bool{}
	groupings := map[dimSet]bool{}
	cutSet := map[uint32]bool{}
	add := func(def cellDef, version, seq uint64, lo, hi float64, hidden bool) error {
		key := obsKey{def, version}
		o := byKey[key]
		if o == nil {
			o = &observation{def: def, lo: lo, hi: hi, hidden: hidden}
			byKey[key] = o
			order = append(order, key)
		} else {
			// The same cell asked twice at one version: both answers hold.
			o.lo, o.hi = max(o.lo, lo), min(o.hi, hi)
			o.hidden = o.hidden || hidden
			if o.lo > o.hi+tolRound {
				return fmt.Errorf("entry %d: %s at data version %d contradicts an earlier answer", seq, def, version)
			}
		}
		if !slices.Contains(o.seqs, seq) {
			o.seqs = append(o.seqs, seq)
		}
		return nil
	}
	for _, e := range entries {
		seq, req := e.GetSeq(), e.GetRequest()
		from, err := records.ParseDate(req.GetFrom())
		if err != nil {
			return fmt.Errorf("entry %d: from: %w", seq, err)
		}
		to, err := records.ParseDate(req.GetTo())
		if err != nil {
			return fmt.Errorf("entry %d: to: %w", seq, err)
		}
		if to < from {
			return fmt.Errorf("entry %d: window %s..%s ends before it starts", seq, req.GetFrom(), req.GetTo())
		}
		var group dimSet
		byMonth := false
		for _, d := range req.GetGroupBy() {
			switch d {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				byMonth = true
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				group |= 1 << dOffence
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				group |= 1 << dChannel
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				group |= 1 << dAge
			default:
				return fmt.Errorf("entry %d: cannot model grouping by %s", seq, records.DimensionName(d))
			}
		}
		grouped := len(req.GetGroupBy()) > 0
		groupings[group] = true
		metrics := req.GetMetrics()
		if len(metrics) == 0 {
			metrics = records.Metrics()
		}
		// The windows of the answer: the request's, or its months.
		type window struct{ from, to uint32 }
		windows := []window{{from, to}}
		if byMonth {
			windows = windows[:0]
			for month := records.MonthOf(from); month <= records.MonthOf(to); month++ {
				f, t := records.FirstDayOfMonth(month), records.FirstDayOfMonth(month+1)-1
				windows = append(windows, window{max(f, from), min(t, to)})
			}
		}
		for _, w := range windows {
			cutSet[w.from], cutSet[w.to+1] = true, true
		}
		version := e.GetDataVersion()
		versionSet[version] = true
		present := map[cellDef]bool{}
		for i, c := range e.GetCells() {
			def := cellDef{metric: c.GetMetric(), from: from, to: to, group: group}
			if !slices.Contains(metrics, def.metric) {
				return fmt.Errorf("entry %d cell %d: metric %s was not asked for", seq, i, records.MetricName(def.metric))
			}
			if byMonth {
				month, err := records.ParseDate(c.GetMonth() + "-01")
				if err != nil || records.MonthOf(month) < records.MonthOf(from) || records.MonthOf(month) > records.MonthOf(to) {
					return fmt.Errorf("entry %d cell %d: month %q is not a month of the window", seq, i, c.GetMonth())
				}
				def.from = max(from, month)
				def.to = min(to, records.FirstDayOfMonth(records.MonthOf(month)+1)-1)
			}
			names := [nDims]string{c.GetOffence(), c.GetChannel(), c.GetVictimAge()}
			for d := range nDims {
				if !group.has(d) {
					if names[d] != "" {
						return fmt.Errorf("entry %d cell %d: %s %q in an answer not grouped by it", seq, i, records.DimensionName(dimProto[d]), names[d])
					}
					continue
				}
				v, ok := parseDimValue(d, names[d])
				if !ok {
					return fmt.Errorf("entry %d cell %d: %s %q is not a value this attacker knows", seq, i, records.DimensionName(dimProto[d]), names[d])
				}
				def.vals[d] = v
			}
			if present[def] {
				return fmt.Errorf("entry %d cell %d: %s appears twice in one answer", seq, i, def)
			}
			present[def] = true
			metricSet[def.metric] = true
			lo, hi := float64(c.GetCount()), float64(c.GetCount())
			hidden := c.GetSuppressedCells() > 0 || c.GetPending()
			if hidden {
				// The bounds hold the true value; an upper bound below
				// the lower one is read as no upper bound at all, and so
				// is the largest uint64, which the node's saturating sums
				// give a bound past every number. Read as 1.8e19 it is a
				// row no tolerance of the simplex can work with.
				lo, hi = float64(c.GetLowerBound()), float64(c.GetUpperBound())
				if hi < lo || c.GetUpperBound() == math.MaxUint64 {
					hi = math.Inf(1)
				}
			}
			if err := add(def, version, seq, lo, hi, hidden); err != nil {
				return err
			}
		}
		if !grouped {
			continue
		}
		// A grouped answer leaves out the cells whose value is zero
		// (AggregateResponse.cells): each one it lacks is an exact 0.
		for _, metric := range metrics {
			metricSet[metric] = true
			for _, w := range windows {
				for g := range group.size() {
					def := cellDef{metric: metric, from: w.from, to: w.to, group: group, vals: group.values(g)}
					if present[def] {
						continue
					}
					if err := add(def, version, seq, 0, 0, false); err != nil {
						return err
					}
				}
			}
		}
	}
	m.versions = sortedKeys(versionSet)
	m.metrics = sortedKeys(metricSet)
	m.cuts = sortedKeys(cutSet)
	m.factors, m.seps = chooseFactors(groupings)
	vIndex := map[uint64]int{}
	for i, v := range m.versions {
		vIndex[v] = i
	}
	for _, key := range order {
		o := byKey[key]
		o.version = vIndex[key.version]
		m.obs = append(m.obs, o)
	}
	return nil
}

func sortedKeys[K cmp.Ordered](set map[K]bool) []K {
	out := make([]K, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// chooseFactors picks the margins the model keeps per atom: the maximal
// groupings of the log. When they can be ordered so that each one meets the
// union of those before it inside a single earlier one (a junction tree),
// margins that agree on those overlaps are exactly the margins of some
// non-negative full cross, so the cross is not needed. Otherwise the model
// keeps the full cross of every dimension grouped by.
func chooseFactors(groupings map[dimSet]bool) ([]dimSet, []separator) {
	var maximal []dimSet
	for g := range groupings {
		sub := false
		for h := range groupings {
			if g != h && g&h == g {
				sub = true
			}
		}
		if !sub {
			maximal = append(maximal, g)
		}
	}
	slices.Sort(maximal)
	if len(maximal) == 0 {
		return []dimSet{0}, nil
	}
	var best []separator
	found := false
	permute(maximal, 0, func(order []dimSet) bool {
		var seps []separator
		var union dimSet
		for j, f := range order {
			if j > 0 {
				s := f & union
				parent := -1
				for p := range j {
					if s&order[p] == s {
						parent = p
						break
					}
				}
				if parent < 0 {
					return false
				}
				seps = append(seps, separator{child: j, parent: parent, dims: s})
			}
			union |= f
		}
		best, found = seps, true
		return true
	})
	if found {
		return maximal, best
	}
	var union dimSet
	for _, f := range maximal {
		union |= f
	}
	return []dimSet{union}, nil
}

// permute calls try with permutations of s (in place) until it returns true.
func permute(s []dimSet, i int, try func([]dimSet) bool) bool {
	if i == len(s) {
		return try(s)
	}
	for j := i; j < len(s); j++ {
		s[i], s[j] = s[j], s[i]
		if permute(s, i+1, try) {
			return true
		}
		s[i], s[j] = s[j], s[i]
	}
	return false
}

// atomOf is the atom holding day, or -1.
func (m *model) atomOf(day uint32) int {
	i, found := slices.BinarySearch(m.cuts, day)
	if !found {
		i--
	}
	if i < 0 || i >= len(m.cuts)-1 {
		return -1
	}
	return i
}

// atomsOf is the atoms of days from..to: [first, end).
func (m *model) atomsOf(from, to uint32) (int, int) {
	a, _ := slices.BinarySearch(m.cuts, from)
	b, _ := slices.BinarySearch(m.cuts, to+1)
	return a, b
}

// factorFor is the first factor that holds every dimension of g.
func (m *model) factorFor(g dimSet) int {
	for i, f := range m.factors {
		if f&g == g {
			return i
		}
	}
	panic("attacker: no factor holds a grouping of the log") // chooseFactors covers every grouping
}

// matching lists the values of factor whose dimensions in g equal g's
// value gv.
func (m *model) matching(factor int, g dimSet, gv int) []int {
	key := [2]int{factor, int(g)}
	lists, ok := m.matchers[key]
	if !ok {
		f := m.factors[factor]
		lists = make([][]int, g.size())
		for v := range f.size() {
			lists[g.index(f.values(v))] = append(lists[g.index(f.values(v))], v)
		}
		m.matchers[key] = lists
	}
	return lists[gv]
}

func (m *model) readTruth() error {
	if m.side.Truth == nil {
		return nil
	}
	m.truth = make([]*versionTruth, len(m.versions))
	for i, v := range m.versions {
		recs, ok := m.side.Truth[v]
		if !ok {
			return fmt.Errorf("the ground truth lacks data version %d, which the log answered from", v)
		}
		vt := &versionTruth{byMetric: map[fedreportv1.Metric][]dated{}, cells: map[innerKey]cellTruth{}}
		for _, r := range recs {
			day, err := records.ParseDate(r.GetDate())
			if err != nil {
				return fmt.Errorf("ground truth record %q: %w", r.GetRecordId(), err)
			}
			vt.byMetric[r.GetMetric()] = append(vt.byMetric[r.GetMetric()], dated{day, r})
			a := m.atomOf(day)
			if a < 0 {
				continue
			}
			q := float64(records.Quantity(r))
			h := recordHash(r)
			for fi, f := range m.factors {
				key := innerKey{metric: r.GetMetric(), atom: a, factor: fi, val: f.index(recordValues(r))}
				c := vt.cells[key]
				c.value += q
				c.ids += h
				vt.cells[key] = c
			}
		}
		for _, list := range vt.byMetric {
			slices.SortFunc(list, func(a, b dated) int { return cmp.Compare(a.day, b.day) })
		}
		m.truth[i] = vt
	}
	return nil
}

// recordHash is a hash of a record's id and quantity; cells sum them, so
// that equal sums mean (barring a collision) the same records.
func recordHash(r *fedreportv1.Record) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range []byte(r.GetRecordId()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	h = (h ^ uint64(records.Quantity(r))) * 1099511628211
	return h * 0x9E3779B97F4A7C15
}

// inDef returns the records of version v in def: record_id -> quantity.
func (m *model) inDef(v int, def cellDef) map[string]uint32 {
	list := m.truth[v].byMetric[def.metric]
	i, _ := slices.BinarySearchFunc(list, def.from, func(d dated, day uint32) int { return cmp.Compare(d.day, day) })
	out := map[string]uint32{}
	for ; i < len(list) && list[i].day <= def.to; i++ {
		if def.matches(list[i].r, list[i].day) {
			out[list[i].r.GetRecordId()] = records.Quantity(list[i].r)
		}
	}
	return out
}

// varOf is the unknown of inner cell key at version v. With Unchanged, a
// cell whose records no write touched shares the previous version's.
func (m *model) varOf(v int, key innerKey) int {
	vk := varKey{v, key}
	if id, ok := m.vars[vk]; ok {
		return id
	}
	var id int
	if m.side.Unchanged && v > 0 && m.truth[v].cells[key] == m.truth[v-1].cells[key] {
		id = m.varOf(v-1, key)
	} else {
		id = len(m.varTruth)
		t := math.NaN()
		if m.truth != nil {
			t = m.truth[v].cells[key].value
		}
		m.varTruth = append(m.varTruth, t)
	}
	m.vars[vk] = id
	ak := atomKey{v, key.metric, key.atom}
	if !m.touched[ak] {
		m.touched[ak] = true
		m.queue = append(m.queue, ak)
	}
	return id
}

// sum adds coef times the inner cells of def at version v to terms.
func (m *model) sum(v int, def cellDef, coef float64, terms map[int]float64) {
	fi := m.factorFor(def.group)
	a, b := m.atomsOf(def.from, def.to)
	gv := def.group.index(def.vals)
	for atom := a; atom < b; atom++ {
		for _, fv := range m.matching(fi, def.group, gv) {
			terms[m.varOf(v, innerKey{metric: def.metric, atom: atom, factor: fi, val: fv})] += coef
		}
	}
}

func sortedTerms(terms map[int]float64) []term {
	out := make([]term, 0, len(terms))
	for v, c := range terms {
		if c != 0 {
			out = append(out, term{v, c})
		}
	}
	slices.SortFunc(out, func(a, b term) int { return cmp.Compare(a.v, b.v) })
	return out
}

func (m *model) disclosureRows() {
	for _, o := range m.obs {
		lo, hi := o.lo, o.hi
		if m.prior {
			lo, hi = 0, math.Inf(1)
		}
		if o.hidden && m.side.SmallCells && m.isCell(o.def) {
			if recs := m.inDef(o.version, o.def); len(recs) >= 1 && len(recs) < int(m.k) {
				lo = max(lo, 1)
				if v := m.defTruth(o.version, o.def); v <= float64(m.k)-1 {
					hi = min(hi, float64(m.k)-1)
				}
			}
		}
		terms := map[int]float64{}
		m.sum(o.version, o.def, 1, terms)
		m.rows = append(m.rows, row{
			terms: sortedTerms(terms),
			lo:    lo, hi: hi,
			what: fmt.Sprintf("%s (entries %s)", m.vname(o.version, o.def), seqList(o.seqs)),
		})
	}
}

func (m *model) vname(v int, def cellDef) string {
	return fmt.Sprintf("v%d %s", m.versions[v], def)
}

// defTruth is def's value at version v by the ground truth.
func (m *model) defTruth(v int, def cellDef) float64 {
	var s float64
	for _, q := range m.inDef(v, def) {
		s += float64(q)
	}
	return s
}

// isCell reports whether def's window is a cell of the release (see
// SideKnowledge.Cell).
func (m *model) isCell(def cellDef) bool {
	return m.side.Cell == nil || m.side.Cell(def.from, def.to)
}

func (m *model) cellTargets() {
	for _, o := range m.obs {
		if !o.hidden || !m.isCell(o.def) {
			continue
		}
		t := &target{kind: KindCell, what: m.vname(o.version, o.def), records: -1, seqs: o.seqs}
		if m.truth != nil {
			recs := m.inDef(o.version, o.def)
			t.records, t.truth, t.known = len(recs), m.defTruth(o.version, o.def), true
			if len(recs) < 1 || len(recs) >= int(m.k) {
				m.skipped++
				continue
			}
		}
		terms := map[int]float64{}
		m.sum(o.version, o.def, 1, terms)
		t.terms = sortedTerms(terms)
		m.targets = append(m.targets, t)
	}
}

// changeTargets adds, for each pair of consecutive versions, the change of
// every cell the log ever disclosed.
func (m *model) changeTargets() {
	var defs []cellDef
	seen := map[cellDef]bool{}
	for _, o := range m.obs {
		if !seen[o.def] && m.isCell(o.def) {
			seen[o.def] = true
			defs = append(defs, o.def)
		}
	}
	for v := 1; v < len(m.versions); v++ {
		for _, def := range defs {
			t := &target{
				kind:    KindChange,
				what:    fmt.Sprintf("v%d→v%d change of %s", m.versions[v-1], m.versions[v], def),
				records: -1,
			}
			if m.truth != nil {
				before, after := m.inDef(v-1, def), m.inDef(v, def)
				changed := 0
				for id, q := range after {
					if p, ok := before[id]; !ok || p != q {
						changed++
					}
				}
				for id := range before {
					if _, ok := after[id]; !ok {
						changed++
					}
				}
				t.records, t.truth, t.known = changed, m.defTruth(v, def)-m.defTruth(v-1, def), true
				if changed < 1 || changed >= int(m.k) {
					m.skipped++
					continue
				}
			}
			terms := map[int]float64{}
			m.sum(v, def, 1, terms)
			m.sum(v-1, def, -1, terms)
			t.terms = sortedTerms(terms)
			m.targets = append(m.targets, t)
		}
	}
}

// consistencyRows ties the factors of every atom the rows and targets use.
func (m *model) consistencyRows() {
	for len(m.queue) > 0 {
		ak := m.queue[0]
		m.queue = m.queue[1:]
		for _, s := range m.seps {
			for sv := range s.dims.size() {
				terms := map[int]float64{}
				for _, fv := range m.matching(s.child, s.dims, sv) {
					terms[m.varOf(ak.version, innerKey{ak.metric, ak.atom, s.child, fv})] += 1
				}
				for _, fv := range m.matching(s.parent, s.dims, sv) {
					terms[m.varOf(ak.version, innerKey{ak.metric, ak.atom, s.parent, fv})] -= 1
				}
				m.rows = append(m.rows, row{
					terms: sortedTerms(terms),
					what: fmt.Sprintf("v%d %s %s..%s: margins agree", m.versions[ak.version], records.MetricName(ak.metric),
						records.DateString(m.cuts[ak.atom]), records.DateString(m.cuts[ak.atom+1]-1)),
				})
			}
		}
	}
}
