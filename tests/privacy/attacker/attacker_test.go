package attacker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

const arrests = fedreportv1.Metric_METRIC_ARRESTS

// entry builds a disclosure entry for arrests as a node logs it.
func entry(seq, version uint64, from, to, groupBy string, cells ...*fedreportv1.Cell) *fedreportv1.DisclosureEntry {
	dims, err := records.ParseDimensions(groupBy)
	if err != nil {
		panic(err)
	}
	return &fedreportv1.DisclosureEntry{
		Seq:         seq,
		DataVersion: version,
		Request: &fedreportv1.AggregateRequest{
			Metrics: []fedreportv1.Metric{arrests},
			From:    from,
			To:      to,
			GroupBy: dims,
		},
		Cells: cells,
	}
}

// labelled is a cell of arrests with labels such as "offence=grooming".
func labelled(labels string) *fedreportv1.Cell {
	c := &fedreportv1.Cell{Metric: arrests}
	for l := range strings.FieldsSeq(labels) {
		name, value, _ := strings.Cut(l, "=")
		switch name {
		case "month":
			c.Month = value
		case "offence":
			c.Offence = value
		case "channel":
			c.Channel = value
		case "victim_age":
			c.VictimAge = value
		default:
			panic("unknown label " + l)
		}
	}
	return c
}

// exact is a published cell of value n.
func exact(labels string, n uint64) *fedreportv1.Cell {
	c := labelled(labels)
	c.Count, c.LowerBound, c.UpperBound = n, n, n
	return c
}

// hidden is a suppressed cell known to lie in lo..hi.
func hidden(labels string, lo, hi uint64) *fedreportv1.Cell {
	c := labelled(labels)
	c.SuppressedCells, c.LowerBound, c.UpperBound = 1, lo, hi
	return c
}

// pending is a cell held at its previous value n while the true value
// lies in lo..hi.
func pending(labels string, n, lo, hi uint64) *fedreportv1.Cell {
	c := exact(labels, n)
	c.Pending, c.LowerBound, c.UpperBound = true, lo, hi
	return c
}

// arrest is a ground-truth record of one arrest.
func arrest(id, date, offence string) *fedreportv1.Record {
	o, err := records.ParseOffence(offence)
	if err != nil {
		panic(err)
	}
	return &fedreportv1.Record{RecordId: id, Metric: arrests, Date: date, Offence: o, Quantity: 1}
}

// arrestsOf makes n arrests of offence on date, with ids prefix-1, prefix-2, ...
func arrestsOf(prefix string, n int, date, offence string) []*fedreportv1.Record {
	var out []*fedreportv1.Record
	for i := range n {
		out = append(out, arrest(fmt.Sprintf("%s-%d", prefix, i+1), date, offence))
	}
	return out
}

func descriptions(f *Findings) []string {
	var out []string
	for _, p := range f.Pinned {
		out = append(out, p.Description)
	}
	return out
}

func TestAttackFindsTheClassicAttacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		k       uint32
		entries []*fedreportv1.DisclosureEntry
		want    []string // each a prefix of one finding, in order
	}{
		{
			name: "the month total minus the exact offences gives the suppressed one",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "", exact("", 20)),
				entry(2, 1, "2020-03-01", "2020-03-31", "offence",
					exact("offence=csam_distribution", 10), hidden("offence=grooming", 1, 4), exact("offence=sextortion", 8)),
			},
			want: []string{"v1 arrests 2020-03-01..2020-03-31 offence=grooming pinned to 2 (entry 2)"},
		},
		{
			name: "a window ending 31 March minus the one ending 30 March gives 31 March",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-01-01", "2020-03-31", "", exact("", 50)),
				entry(2, 1, "2020-01-01", "2020-03-30", "", exact("", 48)),
				entry(3, 1, "2020-03-31", "2020-03-31", "offence", hidden("offence=grooming", 1, 4)),
			},
			want: []string{"v1 arrests 2020-03-31..2020-03-31 offence=grooming pinned to 2 (entry 3)"},
		},
		{
			name: "the same question before and after an ingest of 2 records gives the batch",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-01-01", "2020-03-31", "", exact("", 48)),
				entry(2, 2, "2020-01-01", "2020-03-31", "", exact("", 50)),
			},
			want: []string{"v1→v2 change of arrests 2020-01-01..2020-03-31 pinned to +2"},
		},
		{
			name: "with k = 2 a suppressed cell's bounds 1..1 are its value",
			k:    2,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "offence", exact("offence=grooming", 10), hidden("offence=sextortion", 1, 1)),
			},
			want: []string{"v1 arrests 2020-03-01..2020-03-31 offence=sextortion pinned to 1"},
		},
		{
			name: "two suppressed siblings that must sum to 2 are both 1",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "", exact("", 12)),
				entry(2, 1, "2020-03-01", "2020-03-31", "offence",
					exact("offence=grooming", 10), hidden("offence=sextortion", 1, 4), hidden("offence=other", 1, 4)),
			},
			want: []string{
				"v1 arrests 2020-03-01..2020-03-31 offence=sextortion pinned to 1",
				"v1 arrests 2020-03-01..2020-03-31 offence=other pinned to 1",
			},
		},
		{
			name: "a month by offence and by channel pins a cell through the other margin",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "offence", exact("offence=grooming", 10), hidden("offence=sextortion", 1, 4)),
				entry(2, 1, "2020-03-01", "2020-03-31", "channel", exact("channel=app", 13)),
			},
			want: []string{"v1 arrests 2020-03-01..2020-03-31 offence=sextortion pinned to 3"},
		},
		{
			name: "months of one answer by month minus another window",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-01-01", "2020-02-29", "month", exact("month=2020-01", 30), hidden("month=2020-02", 1, 4)),
				entry(2, 1, "2020-01-01", "2020-02-29", "", exact("", 33)),
			},
			want: []string{"v1 arrests 2020-02-01..2020-02-29 pinned to 3"},
		},
		{
			name: "three suppressed siblings worth 8 under a known total are protected",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "", exact("", 20)),
				entry(2, 1, "2020-03-01", "2020-03-31", "offence",
					exact("offence=grooming", 12), hidden("offence=sextortion", 1, 4), hidden("offence=other", 1, 4), hidden("offence=unknown", 1, 4)),
			},
		},
		{
			name: "two suppressed siblings worth 7 lie in 3..4 each",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-03-01", "2020-03-31", "", exact("", 20)),
				entry(2, 1, "2020-03-01", "2020-03-31", "offence",
					exact("offence=grooming", 13), hidden("offence=sextortion", 1, 4), hidden("offence=other", 1, 4)),
			},
		},
		{
			name: "a total held at its previous value while a small change is pending",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-01-01", "2020-03-31", "", exact("", 48)),
				entry(2, 2, "2020-01-01", "2020-03-31", "", pending("", 48, 48, 52)),
			},
		},
		{
			name: "windows that only overlap do not isolate a day",
			k:    5,
			entries: []*fedreportv1.DisclosureEntry{
				entry(1, 1, "2020-01-01", "2020-03-31", "", exact("", 50)),
				entry(2, 1, "2020-03-31", "2020-03-31", "offence", hidden("offence=grooming", 1, 4), exact("offence=other", 6)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Attack(tt.entries, tt.k, SideKnowledge{})
			if err != nil {
				t.Fatalf("Attack: %v", err)
			}
			descs := descriptions(got)
			if len(descs) != len(tt.want) {
				t.Fatalf("got %d findings, want %d:\n%s", len(descs), len(tt.want), got)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(descs[i], w) {
					t.Errorf("finding %d is %q, want it to start %q", i, descs[i], w)
				}
			}
		})
	}
}

// The side knowledge of the worst-case attacker pins what the log alone
// does not, and the ground truth decides which targets matter.
func TestAttackWithSideKnowledge(t *testing.T) {
	t.Parallel()
	jan := arrestsOf("a", 8, "2020-01-10", "csam_distribution")
	batch := arrestsOf("b", 2, "2020-01-20", "sextortion")
	entries := []*fedreportv1.DisclosureEntry{
		entry(1, 1, "2020-01-01", "2020-01-31", "offence", exact("offence=csam_distribution", 8)),
		entry(2, 2, "2020-01-01", "2020-01-31", "", exact("", 10)),
	}
	truth := map[uint64][]*fedreportv1.Record{1: jan, 2: append(append([]*fedreportv1.Record{}, jan...), batch...)}
	tests := []struct {
		name string
		side SideKnowledge
		want []string
	}{
		{
			name: "the log alone pins the change of the total",
			side: SideKnowledge{Truth: truth},
			want: []string{"v1→v2 change of arrests 2020-01-01..2020-01-31 pinned to +2 (2 records changed)"},
		},
		{
			name: "knowing which cells the ingest left alone also pins the offence of the batch",
			side: SideKnowledge{Truth: truth, Unchanged: true},
			want: []string{
				"v1→v2 change of arrests 2020-01-01..2020-01-31 offence=sextortion pinned to +2 (2 records changed)",
				"v1→v2 change of arrests 2020-01-01..2020-01-31 pinned to +2 (2 records changed)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Attack(entries, 5, tt.side)
			if err != nil {
				t.Fatalf("Attack: %v", err)
			}
			if descs := descriptions(got); strings.Join(descs, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got findings\n%s\nwant\n%s", strings.Join(descs, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Bounds wider than 1..k-1 protect two siblings that sum to 2, until the
// attacker knows both are primary.
func TestAttackSmallCells(t *testing.T) {
	t.Parallel()
	entries := []*fedreportv1.DisclosureEntry{
		entry(1, 1, "2020-03-01", "2020-03-31", "", exact("", 12)),
		entry(2, 1, "2020-03-01", "2020-03-31", "offence",
			exact("offence=grooming", 10), hidden("offence=sextortion", 0, 6), hidden("offence=other", 0, 6)),
	}
	recs := arrestsOf("g", 10, "2020-03-02", "grooming")
	recs = append(recs, arrest("s", "2020-03-03", "sextortion"), arrest("o", "2020-03-04", "other"))
	truth := map[uint64][]*fedreportv1.Record{1: recs}
	for _, tt := range []struct {
		side SideKnowledge
		want int
	}{
		{SideKnowledge{}, 0},
		{SideKnowledge{Truth: truth}, 0},
		{SideKnowledge{Truth: truth, SmallCells: true}, 2},
	} {
		got, err := Attack(entries, 5, tt.side)
		if err != nil {
			t.Fatalf("Attack (small cells %v): %v", tt.side.SmallCells, err)
		}
		if len(got.Pinned) != tt.want {
			t.Errorf("small cells %v, truth %v: got %d findings, want %d:\n%s", tt.side.SmallCells, tt.side.Truth != nil, len(got.Pinned), tt.want, got)
		}
	}
}

// A target the side knowledge pins with nothing disclosed is Foreknown, not
// a finding: four 1-record offences under a 4-record total, all withheld.
func TestAttackForeknown(t *testing.T) {
	t.Parallel()
	entries := []*fedreportv1.DisclosureEntry{
		entry(1, 1, "2020-03-01", "2020-03-31", "", hidden("", 1, 1<<40)),
		entry(2, 1, "2020-03-01", "2020-03-31", "offence",
			hidden("offence=grooming", 1, 1<<40), hidden("offence=sextortion", 1, 1<<40),
			hidden("offence=other", 1, 1<<40), hidden("offence=csam_distribution", 1, 1<<40)),
	}
	recs := []*fedreportv1.Record{arrest("g", "2020-03-02", "grooming"), arrest("s", "2020-03-03", "sextortion"),
		arrest("o", "2020-03-04", "other"), arrest("c", "2020-03-05", "csam_distribution")}
	truth := map[uint64][]*fedreportv1.Record{1: recs}
	got, err := Attack(entries, 5, SideKnowledge{Truth: truth, SmallCells: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Pinned) != 0 || len(got.Foreknown) != 5 {
		t.Errorf("got %d findings and %d foreknown, want 0 and 5 (the total and its four offences):\n%s", len(got.Pinned), len(got.Foreknown), got)
	}
}

// A node whose bounds do not hold the true value is an error, not a pass.
func TestAttackRefusesALogThatContradictsTheTruth(t *testing.T) {
	t.Parallel()
	entries := []*fedreportv1.DisclosureEntry{
		entry(1, 1, "2020-03-01", "2020-03-31", "offence", hidden("offence=grooming", 1, 4)),
	}
	truth := map[uint64][]*fedreportv1.Record{1: arrestsOf("g", 6, "2020-03-02", "grooming")}
	_, err := Attack(entries, 5, SideKnowledge{Truth: truth})
	if err == nil || !strings.Contains(err.Error(), "records hold 6") {
		t.Errorf("got error %v, want one saying the records hold 6", err)
	}
}

func TestChooseFactors(t *testing.T) {
	t.Parallel()
	const off, ch, age = 1 << dOffence, 1 << dChannel, 1 << dAge
	tests := []struct {
		name      string
		groupings []dimSet
		want      []dimSet
		seps      int
	}{
		{"margins alone stay margins", []dimSet{0, off, ch, age}, []dimSet{off, ch, age}, 2},
		{"a cross and a margin inside it", []dimSet{off | ch, off}, []dimSet{off | ch}, 0},
		{"two crosses sharing a dimension", []dimSet{off | ch, ch | age}, []dimSet{off | ch, ch | age}, 1},
		{"a cycle of crosses needs the full cross", []dimSet{off | ch, ch | age, off | age}, []dimSet{off | ch | age}, 0},
		{"totals only", []dimSet{0}, []dimSet{0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := map[dimSet]bool{}
			for _, g := range tt.groupings {
				set[g] = true
			}
			got, seps := chooseFactors(set)
			if fmt.Sprint(sortedSets(got)) != fmt.Sprint(sortedSets(tt.want)) || len(seps) != tt.seps {
				t.Errorf("got factors %v with %d separators, want %v with %d", got, len(seps), tt.want, tt.seps)
			}
		})
	}
}

func sortedSets(s []dimSet) []dimSet {
	set := map[dimSet]bool{}
	for _, d := range s {
		set[d] = true
	}
	return sortedKeys(set)
}

// TestAttackMatchesBruteForce checks the whole attacker (atoms, margins,
// absent cells, presolve, merging, screen, LP) against exhaustive search on
// tiny random logs: 2 days × 2 offences × 2 channels, a node suppressing
// 1..k-1 as today's does, and the whole window's total exact so that every
// assignment the log allows can be listed. The attacker must pin exactly
// the suppressed cells the search pins, with the log alone and with the
// ground truth (which sends it through the screen first).
func TestAttackMatchesBruteForce(t *testing.T) {
	t.Parallel()
	const k = 3
	days := []string{"2020-03-01", "2020-03-02"}
	offences := []string{"grooming", "sextortion"}
	channels := []string{"website", "app"}
	// Cell i of an assignment is day i/4, offence i/2%2, channel i%2.
	type question struct {
		from, to int // days
		groupBy  string
	}
	groupings := []string{"", "offence", "channel", "offence,channel", "month"}
	value := func(cells []int, q question, offence, channel string) int {
		s := 0
		for i, n := range cells {
			d, o, c := i/4, offences[i/2%2], channels[i%2]
			if d >= q.from && d <= q.to && (offence == "" || o == offence) && (channel == "" || c == channel) {
				s += n
			}
		}
		return s
	}
	// groups lists the (offence, channel) labels of q's cells.
	groups := func(q question) [][2]string {
		var out [][2]string
		switch q.groupBy {
		case "", "month":
			out = append(out, [2]string{"", ""})
		case "offence":
			for _, o := range offences {
				out = append(out, [2]string{o, ""})
			}
		case "channel":
			for _, c := range channels {
				out = append(out, [2]string{"", c})
			}
		default:
			for _, o := range offences {
				for _, c := range channels {
					out = append(out, [2]string{o, c})
				}
			}
		}
		return out
	}
	label := func(q question, g [2]string) string {
		var parts []string
		if q.groupBy == "month" {
			parts = append(parts, "month=2020-03")
		}
		if g[0] != "" {
			parts = append(parts, "offence="+g[0])
		}
		if g[1] != "" {
			parts = append(parts, "channel="+g[1])
		}
		return strings.Join(parts, " ")
	}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		truth := make([]int, 8)
		total := 4 + rng.IntN(4)
		for range total {
			truth[rng.IntN(8)]++
		}
		questions := []question{{0, 1, ""}}
		for range 3 + rng.IntN(4) {
			from := rng.IntN(2)
			questions = append(questions, question{from, from + rng.IntN(2-from), groupings[rng.IntN(len(groupings))]})
		}
		// The log, as today's node writes it.
		var entries []*fedreportv1.DisclosureEntry
		for i, q := range questions {
			var cells []*fedreportv1.Cell
			for _, g := range groups(q) {
				n := value(truth, q, g[0], g[1])
				switch {
				case n == 0 && q.groupBy != "":
				case n < k && n > 0:
					cells = append(cells, hidden(label(q, g), 1, k-1))
				default:
					cells = append(cells, exact(label(q, g), uint64(n)))
				}
			}
			entries = append(entries, entry(uint64(i+1), 1, days[q.from], days[q.to], q.groupBy, cells...))
		}
		// Every assignment of the total to the 8 cells that gives the
		// same log; the range of each suppressed cell over them.
		type cellRange struct{ lo, hi int }
		ranges := map[string]*cellRange{}
		var walk func(cells []int, i, left int)
		walk = func(cells []int, i, left int) {
			if i < len(cells)-1 {
				for n := 0; n <= left; n++ {
					cells[i] = n
					walk(cells, i+1, left-n)
				}
				return
			}
			cells[i] = left
			for _, q := range questions {
				for _, g := range groups(q) {
					n, want := value(cells, q, g[0], g[1]), value(truth, q, g[0], g[1])
					if (want == 0 || want >= k) && n != want || want > 0 && want < k && (n < 1 || n >= k) {
						return
					}
				}
			}
			for _, q := range questions {
				for _, g := range groups(q) {
					if want := value(truth, q, g[0], g[1]); want > 0 && want < k {
						key := fmt.Sprintf("%s..%s %s", days[q.from], days[q.to], label(q, g))
						n := value(cells, q, g[0], g[1])
						if r := ranges[key]; r == nil {
							ranges[key] = &cellRange{n, n}
						} else {
							r.lo, r.hi = min(r.lo, n), max(r.hi, n)
						}
					}
				}
			}
		}
		walk(make([]int, 8), 0, total)
		// The search labels a month's cells by month, the attacker by days.
		var want []string
		for key, r := range ranges {
			if r.lo == r.hi {
				want = append(want, strings.TrimSpace(strings.Replace(key, "month=2020-03", "", 1)))
			}
		}
		want = slices.Compact(slices.Sorted(slices.Values(want)))

		var recs []*fedreportv1.Record
		for i, n := range truth {
			for j := range n {
				r := arrest(fmt.Sprintf("c%d-%d", i, j), days[i/4], offences[i/2%2])
				r.Channel, _ = records.ParseChannel(channels[i%2])
				recs = append(recs, r)
			}
		}
		for _, side := range []SideKnowledge{{}, {Truth: map[uint64][]*fedreportv1.Record{1: recs}}} {
			got, err := Attack(entries, k, side)
			if err != nil {
				t.Fatalf("seed %d: Attack: %v", seed, err)
			}
			if pinned := pinnedCells(got); strings.Join(pinned, "\n") != strings.Join(want, "\n") {
				t.Errorf("seed %d, truth %v: attacker pins\n%s\nexhaustive search pins\n%s", seed, side.Truth != nil, strings.Join(pinned, "\n"), strings.Join(want, "\n"))
			}
		}
	}
}

// pinnedCells is the window and labels of each cell in f's findings:
// "2020-03-01..2020-03-02 offence=grooming".
func pinnedCells(f *Findings) []string {
	var pinned []string
	for _, p := range f.Pinned {
		d := strings.TrimPrefix(p.Description, "v1 arrests ")
		pinned = append(pinned, strings.TrimSpace(d[:strings.Index(d, " pinned")]))
	}
	return slices.Compact(slices.Sorted(slices.Values(pinned)))
}
