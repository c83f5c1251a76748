// Package periods is the release calendar of a member's disclosure policy
// (DESIGN.md "Disclosure policy and the protected release"): calendar months
// and the member's named periods, such as an operation's phases. A node
// answers a window only when release periods tile it, so every answer is a
// sum of cells of its release; the coordinator uses the same rule to refuse a
// rollup some member cannot answer before it asks anyone.
//
// Days are day numbers as internal/records counts them (days since
// 1970-01-01); every interval is inclusive.
package periods

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/isa-alliance/fedreport/internal/records"
)

// Period is one release period: a calendar month or a named period.
type Period struct {
	// Name is the named period's name; empty for a calendar month.
	Name     string
	From, To uint32 // inclusive day numbers
}

// String returns the period as a user reads it: "phase-1 (2020-01-01..2020-05-30)"
// or "2020-03".
func (p Period) String() string {
	if p.Name == "" {
		return records.MonthString(records.MonthOf(p.From))
	}
	return fmt.Sprintf("%s (%s)", p.Name, Window{p.From, p.To})
}

// Window is an inclusive range of days.
type Window struct{ From, To uint32 }

// String returns "YYYY-MM-DD..YYYY-MM-DD".
func (w Window) String() string {
	return records.DateString(w.From) + ".." + records.DateString(w.To)
}

// Days is the window's length in days.
func (w Window) Days() uint32 { return w.To - w.From + 1 }

// Calendar is a validated set of named periods; calendar months are always
// release periods too.
type Calendar struct {
	named []Period // sorted by From, then longest first; disjoint or nested
}

// New checks the named periods and returns their calendar: each needs a
// name and from <= to; no two may share a name, and two periods are either
// disjoint or one inside the other (an operation and its phases), because the
// part of a period that sticks out of another would be published as their
// difference. Errors name the
// period and say what to fix.
func New(named []Period) (*Calendar, error) {
	ps := slices.Clone(named)
	for i, p := range ps {
		switch {
		case p.Name == "":
			return nil, fmt.Errorf("periods[%d]: name is required", i)
		case p.From > p.To:
			return nil, fmt.Errorf("period %q: from %s is after to %s (want from <= to)", p.Name, records.DateString(p.From), records.DateString(p.To))
		}
		for _, q := range ps[:i] {
			if q.Name == p.Name {
				return nil, fmt.Errorf("period %q is listed twice", p.Name)
			}
		}
	}
	slices.SortFunc(ps, func(a, b Period) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(b.To, a.To)) })
	for i, b := range ps {
		for _, a := range ps[:i] {
			// a starts first; b must lie inside a or after it.
			if b.From <= a.To && b.To > a.To {
				return nil, fmt.Errorf("periods %q (%s) and %q (%s) overlap: named periods must be disjoint or one inside the other",
					a.Name, Window{a.From, a.To}, b.Name, Window{b.From, b.To})
			}
		}
	}
	return &Calendar{named: ps}, nil
}

// Named returns the named periods, sorted by start.
func (c *Calendar) Named() []Period { return slices.Clone(c.named) }

// Within returns every release period that lies inside w: the calendar
// months and the named periods, sorted by start, then longest first.
func (c *Calendar) Within(w Window) []Period {
	var out []Period
	for m := records.MonthOf(w.From); ; m++ {
		from, to := records.FirstDayOfMonth(m), records.FirstDayOfMonth(m+1)-1
		if from > w.To {
			break
		}
		if from >= w.From && to <= w.To {
			out = append(out, Period{From: from, To: to})
		}
	}
	for _, p := range c.named {
		if p.From >= w.From && p.To <= w.To {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Period) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(b.To, a.To))
	})
	return out
}

// Tile returns the fewest release periods that tile w exactly, in order,
// and whether there are any. Fewest pieces keeps an answer as exact as the
// release allows: a phase is one published cell, its months several.
func (c *Calendar) Tile(w Window) ([]Period, bool) {
	if w.From > w.To {
		return nil, false
	}
	ps := c.Within(w)
	// Breadth-first over the days where a tiling can stand: the first
	// tiling to reach w.To+1 has the fewest periods.
	prev := map[uint32]int{w.From: -1} // day -> index of the period ending the day before
	frontier := []uint32{w.From}
	for len(frontier) > 0 {
		var next []uint32
		for _, day := range frontier {
			for i, p := range ps {
				if p.From != day {
					continue
				}
				end := p.To + 1
				if _, seen := prev[end]; seen {
					continue
				}
				prev[end] = i
				next = append(next, end)
			}
		}
		if _, ok := prev[w.To+1]; ok {
			var tiles []Period
			for day := w.To + 1; day != w.From; {
				p := ps[prev[day]]
				tiles = append(tiles, p)
				day = p.From
			}
			slices.Reverse(tiles)
			return tiles, true
		}
		frontier = next
	}
	return nil, false
}

// TileMonths is Tile for an answer grouped by month: the window is cut at
// month boundaries and each month's part must be tiled on its own, so that
// every month's cell is a sum of release cells. It returns the tiles of each
// part, in order.
func (c *Calendar) TileMonths(w Window) ([][]Period, bool) {
	if w.From > w.To {
		return nil, false
	}
	var out [][]Period
	for m := records.MonthOf(w.From); ; m++ {
		part := Window{max(w.From, records.FirstDayOfMonth(m)), min(w.To, records.FirstDayOfMonth(m+1)-1)}
		if part.From > w.To {
			break
		}
		tiles, ok := c.Tile(part)
		if !ok {
			return nil, false
		}
		out = append(out, tiles)
	}
	return out, true
}

// starts returns the first days of release periods near day: the start of
// its month, of the next month, and of any named period within a year.
func (c *Calendar) starts(day uint32) []uint32 {
	m := records.MonthOf(day)
	out := []uint32{records.FirstDayOfMonth(m), records.FirstDayOfMonth(m + 1)}
	for _, p := range c.named {
		if p.From+366 >= day && p.From <= day+366 {
			out = append(out, p.From)
		}
	}
	return out
}

// ends returns the last days of release periods near day.
func (c *Calendar) ends(day uint32) []uint32 {
	m := records.MonthOf(day)
	out := []uint32{records.FirstDayOfMonth(m) - 1, records.FirstDayOfMonth(m+1) - 1}
	for _, p := range c.named {
		if p.To+366 >= day && p.To <= day+366 {
			out = append(out, p.To)
		}
	}
	return out
}

// Nearest returns up to two windows the calendar tiles that are closest to
// w: the largest inside it and the smallest around it (the one a user most
// likely meant first). It is what a refusal suggests instead.
func (c *Calendar) Nearest(w Window) []Window {
	var inside, around *Window
	dist := func(x Window) uint32 {
		return absDiff(x.From, w.From) + absDiff(x.To, w.To)
	}
	for _, from := range c.starts(w.From) {
		for _, to := range c.ends(w.To) {
			x := Window{from, to}
			if from > to {
				continue
			}
			if _, ok := c.Tile(x); !ok {
				continue
			}
			switch {
			case x.From >= w.From && x.To <= w.To:
				if inside == nil || dist(x) < dist(*inside) {
					inside = &x
				}
			case x.From <= w.From && x.To >= w.To:
				if around == nil || dist(x) < dist(*around) {
					around = &x
				}
			}
		}
	}
	var out []Window
	for _, x := range []*Window{around, inside} {
		if x != nil {
			out = append(out, *x)
		}
	}
	if len(out) == 2 && dist(out[1]) < dist(out[0]) {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

// Refusal is the sentence a refusal of w says: why, and the nearest windows
// that are allowed.
func (c *Calendar) Refusal(w Window) string {
	var b strings.Builder
	fmt.Fprintf(&b, "window %s is not a union of release periods (calendar months", w)
	if len(c.named) > 0 {
		b.WriteString(" and ")
		for i, p := range c.named {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(p.String())
		}
	}
	b.WriteString(")")
	if near := c.Nearest(w); len(near) > 0 {
		b.WriteString("; nearest allowed: ")
		for i, x := range near {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString(x.String())
		}
	}
	return b.String()
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
