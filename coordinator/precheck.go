package coordinator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// A member node answers only from its protected release (DESIGN.md
// "Disclosure policy and the protected release"): a window that its release
// periods do not tile, or a grouping that is not one of its tables, it
// refuses. A rollup some member refuses would still have the others
// disclose, into their logs and this coordinator's history, cells that give
// no alliance total. So the coordinator checks a rollup against the release
// each node advertises (DescribeNode: Policy.periods and Policy.tables)
// before it asks anyone, and refuses it naming the member and the windows it
// would accept.

// ErrorInfo reasons of a rollup refused before any member was asked; a node
// refuses an Aggregate request with the same reasons.
const (
	// ReasonPeriodNotAligned: the window is not a union of some member's
	// release periods (for a rollup by month, each month's part is not).
	ReasonPeriodNotAligned = "PERIOD_NOT_ALIGNED"
	// ReasonTableNotPublished: the grouping, member and month aside, is not
	// one of the tables some member publishes.
	ReasonTableNotPublished = "TABLE_NOT_PUBLISHED"
)

// RefusedError is a rollup refused before any member was asked, because the
// release some members advertise cannot answer it.
type RefusedError struct {
	// Reason is ReasonPeriodNotAligned or ReasonTableNotPublished.
	Reason string
	// Members are the codes of the members that cannot answer, in registry order.
	Members []string
	// Fields are the request fields to change (spec.from, spec.group_by).
	Fields []string
	// Msg names each member, why it cannot answer and what it would accept.
	Msg string
}

// Error implements error.
func (e *RefusedError) Error() string { return e.Msg }

// release is what a node advertised of its protected release, as the
// pre-check reads it.
type release struct {
	calendar *periods.Calendar
	tables   []uint32 // each table's dimensions as a bit set (1 << Dimension)
	names    []string // each table's dimensions as a user types them (offence,channel)
}

// newRelease reads a node's advertised release from its policy. It returns
// nil, so the member is not pre-checked, for a member that advertises no
// tables (a node older than the protected release) or advertises periods
// that do not make a calendar: the member is then asked and refuses, or
// not, on its own.
func newRelease(p *fedreportv1.Policy) *release {
	if len(p.GetTables()) == 0 {
		return nil
	}
	named := make([]periods.Period, 0, len(p.GetPeriods()))
	for _, pp := range p.GetPeriods() {
		from, err1 := records.ParseDate(pp.GetFrom())
		to, err2 := records.ParseDate(pp.GetTo())
		if err1 != nil || err2 != nil {
			return nil
		}
		named = append(named, periods.Period{Name: clean(pp.GetName()), From: from, To: to})
	}
	cal, err := periods.New(named)
	if err != nil {
		return nil
	}
	r := &release{calendar: cal}
	for _, t := range p.GetTables() {
		var set uint32
		for _, d := range t.GetDimensions() {
			if records.ValidDimension(d) && d != fedreportv1.Dimension_DIMENSION_MEMBER && d != fedreportv1.Dimension_DIMENSION_MONTH {
				set |= 1 << d
			}
		}
		if set == 0 || slices.Contains(r.tables, set) {
			continue // the total is always published
		}
		r.tables = append(r.tables, set)
		r.names = append(r.names, records.DimensionNames(dimensionsOf(set)))
	}
	return r
}

// dimensionsOf lists the dimensions of a bit set, in enum order.
func dimensionsOf(set uint32) []fedreportv1.Dimension {
	var out []fedreportv1.Dimension
	for d := fedreportv1.Dimension(0); d < 32; d++ {
		if set&(1<<d) != 0 {
			out = append(out, d)
		}
	}
	return out
}

// windowRefusal says why r cannot answer window w (by month when byMonth),
// or "" when it can.
func (r *release) windowRefusal(w periods.Window, byMonth bool) string {
	if _, ok := r.calendar.Tile(w); !ok {
		return r.calendar.Refusal(w)
	}
	if !byMonth {
		return ""
	}
	if _, ok := r.calendar.TileMonths(w); ok {
		return ""
	}
	// The window is allowed, but not cut by months: suggest windows of
	// whole months, which every calendar tiles month by month.
	first, last := records.MonthOf(w.From), records.MonthOf(w.To)
	near := []periods.Window{{From: records.FirstDayOfMonth(first), To: records.FirstDayOfMonth(last+1) - 1}}
	if records.FirstDayOfMonth(first) != w.From {
		first++
	}
	if records.FirstDayOfMonth(last+1)-1 != w.To {
		last--
	}
	if first <= last {
		near = append(near, periods.Window{From: records.FirstDayOfMonth(first), To: records.FirstDayOfMonth(last+1) - 1})
	}
	parts := make([]string, len(near))
	for i, x := range near {
		parts[i] = x.String()
	}
	return fmt.Sprintf("window %s is not a union of release periods within each month, as an answer by month needs; nearest allowed by month: %s",
		w, strings.Join(parts, " or "))
}

// tableRefusal says why r cannot answer a grouping whose dimensions, member
// and month aside, are the bit set group, or "" when it can.
func (r *release) tableRefusal(group uint32) string {
	if group == 0 || slices.Contains(r.tables, group) {
		return ""
	}
	return fmt.Sprintf("it publishes no table by %s (its tables: %s, and the total); group by one of those, with member or month if you like",
		records.DimensionNames(dimensionsOf(group)), strings.Join(r.names, "; "))
}

// precheck refuses spec with a *RefusedError when a node member's advertised
// release cannot answer it. Members whose release is not known yet are asked
// to describe themselves first; a refusal may rest on a release since
// extended, so every member is asked again before it stands. Each ask is
// bounded as the wait for a member that was down is (a quarter of the member
// timeout, at most reconnectWait), so a member that hangs delays the rollup
// by that moment only. Members that do not answer are not pre-checked: the
// rollup asks them and reports them as before.
func (c *Coordinator) precheck(ctx context.Context, reg *registry, spec *fedreportv1.RollupSpec, timeout time.Duration) error {
	wait := min(timeout/4, reconnectWait)
	c.probeAll(ctx, reg, (*memberConn).worthDescribing, wait)
	if c.refusal(reg, spec) == nil {
		return nil
	}
	c.probeAll(ctx, reg, nil, wait)
	if r := c.refusal(reg, spec); r != nil {
		return r
	}
	return nil
}

// probeAll asks, all at once, the members for which ask returns true (every
// member when ask is nil) to describe themselves, each within timeout.
func (c *Coordinator) probeAll(ctx context.Context, reg *registry, ask func(*memberConn) bool, timeout time.Duration) {
	var g errgroup.Group
	g.SetLimit(fanOutLimit)
	for _, m := range reg.members {
		if ask != nil && !ask(m) {
			continue
		}
		g.Go(func() error {
			c.probeWithin(ctx, m, timeout)
			return nil
		})
	}
	_ = g.Wait() // probe records failures on the member instead of returning them.
}

// refusal is precheck against what the members last advertised.
func (c *Coordinator) refusal(reg *registry, spec *fedreportv1.RollupSpec) *RefusedError {
	from, _ := records.ParseDate(spec.GetFrom()) // ValidateSpec has checked both
	to, _ := records.ParseDate(spec.GetTo())
	w := periods.Window{From: from, To: to}
	var group uint32
	byMonth := false
	for _, d := range spec.GetGroupBy() {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MEMBER:
		case fedreportv1.Dimension_DIMENSION_MONTH:
			byMonth = true
		default:
			group |= 1 << d
		}
	}
	var windows, tables reasons
	var windowMembers, tableMembers []string
	for _, m := range reg.members {
		r := m.advertisedRelease()
		if r == nil {
			continue
		}
		if why := r.windowRefusal(w, byMonth); why != "" {
			windows.add(m.Code, why)
			windowMembers = append(windowMembers, m.Code)
		}
		if why := r.tableRefusal(group); why != "" {
			tables.add(m.Code, why)
			tableMembers = append(tableMembers, m.Code)
		}
	}
	// One reason per refusal: the window first, as the one a user most
	// often has to change; the tables are said again once it is fixed.
	switch {
	case len(windows.whys) > 0:
		return &RefusedError{Reason: ReasonPeriodNotAligned, Members: windowMembers, Fields: []string{"spec.from", "spec.to"},
			Msg: "rollup refused before asking any member: " + windows.String()}
	case len(tables.whys) > 0:
		return &RefusedError{Reason: ReasonTableNotPublished, Members: tableMembers, Fields: []string{"spec.group_by"},
			Msg: "rollup refused before asking any member: " + tables.String()}
	}
	return nil
}

// reasons collects why members cannot answer, in registry order, saying a
// reason that several members share once: nine members of one policy make
// one sentence, not nine.
type reasons struct {
	whys    []string
	members map[string][]string // why -> member codes
}

func (r *reasons) add(member, why string) {
	if r.members == nil {
		r.members = map[string][]string{}
	}
	if _, seen := r.members[why]; !seen {
		r.whys = append(r.whys, why)
	}
	r.members[why] = append(r.members[why], member)
}

func (r *reasons) String() string {
	out := make([]string, len(r.whys))
	for i, why := range r.whys {
		codes := r.members[why]
		if len(codes) == 1 {
			out[i] = fmt.Sprintf("member %s cannot answer: %s", codes[0], why)
		} else {
			out[i] = fmt.Sprintf("members %s cannot answer: %s", strings.Join(codes, ", "), why)
		}
	}
	return strings.Join(out, "; ")
}
