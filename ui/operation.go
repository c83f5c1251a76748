package ui

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// rollupScan bounds how many stored rollups, newest first, the operation
// view reads to find each window's latest rollups.
const rollupScan = 2000

// OperationView is an operation with the latest rollups of its phases and
// of the whole, as the operation page and the report show it.
type OperationView struct {
	Op      *fedreportv1.Operation
	Windows []*Window
	Metrics []*MetricRow
}

// Window is one phase, or the whole operation, with its latest rollups.
type Window struct {
	Label    string
	Phase    string // "1", "2", ...; "" for the whole operation
	From, To string
	// Totals is the latest complete or partial rollup of the window
	// without grouping (FULL view: its members' cells draw the chart per
	// member); nil when none is stored.
	Totals *fedreportv1.Rollup
	// ByMonth is the latest complete or partial rollup of the window by
	// month; nil when none is stored.
	ByMonth *fedreportv1.Rollup
	// Missing are the operation's members whose answer is not in Totals.
	Missing []string
	// MonthMissing are those whose answer is not in ByMonth.
	MonthMissing []string
	// Others are members summed in Totals that the operation does not
	// list as taking part: a rollup asks every registered member.
	Others []string
	// MonthAligned says whether the window is a union of whole months,
	// the only windows members publish by month.
	MonthAligned bool
}

// Partial reports whether the window's totals miss a member.
func (w *Window) Partial() bool { return w.Totals != nil && len(w.Missing) > 0 }

// MetricRow is one metric across the windows.
type MetricRow struct {
	Metric fedreportv1.Metric
	Name   string // as on the command line
	Label  string // for people
	Cells  []*MetricCell
}

// MetricCell is one metric of one window.
type MetricCell struct {
	Window   *Window
	Total    Value
	HasTotal bool
	// Partial: Total sums only the members that answered; it is not the
	// alliance total, and the page says so instead of calling it one.
	Partial   bool
	RollupID  string
	PerMember *Chart
	PerMonth  *Chart
}

// metricLabels are the metrics' names for people.
var metricLabels = map[fedreportv1.Metric]string{
	fedreportv1.Metric_METRIC_ARRESTS:            "Arrests",
	fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED: "Victims identified",
	fedreportv1.Metric_METRIC_SITES_BLOCKED:      "Websites and applications blocked",
	fedreportv1.Metric_METRIC_JUDICIAL_REFERRALS: "Judicial referrals",
	fedreportv1.Metric_METRIC_REPORTS_RECEIVED:   "Reports received",
}

func metricLabel(m fedreportv1.Metric) string {
	if l, ok := metricLabels[m]; ok {
		return l
	}
	return records.MetricName(m)
}

// findOperation returns the operation name, or nil with the operations
// the coordinator names.
func findOperation(ctx context.Context, c fedreportv1.CoordinatorServiceClient, name string) (*fedreportv1.Operation, []*fedreportv1.Operation, error) {
	ops, err := listOperations(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	for _, op := range ops {
		if op.GetName() == name {
			return op, ops, nil
		}
	}
	return nil, ops, nil
}

// listOperations reads every page of ListOperations.
func listOperations(ctx context.Context, c fedreportv1.CoordinatorServiceClient) ([]*fedreportv1.Operation, error) {
	var out []*fedreportv1.Operation
	req := &fedreportv1.ListOperationsRequest{}
	for {
		resp, err := c.ListOperations(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetOperations()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out, nil
		}
	}
}

// usable reports whether a rollup has totals to show: complete, or
// partial (shown as partial).
func usable(r *fedreportv1.Rollup) bool {
	st := r.GetState()
	return st == fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || st == fedreportv1.RollupState_ROLLUP_STATE_PARTIAL
}

// matches reports whether r asked for window w over every metric, grouped
// by exactly by.
func matches(r *fedreportv1.Rollup, w *Window, by []fedreportv1.Dimension) bool {
	sp := r.GetSpec()
	return sp.GetFrom() == w.From && sp.GetTo() == w.To && len(sp.GetMetrics()) == 0 && slices.Equal(sp.GetGroupBy(), by)
}

var byMonth = []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}

// buildOperationView finds the latest rollups of op's windows and lays
// out its totals and charts.
func buildOperationView(ctx context.Context, c fedreportv1.CoordinatorServiceClient, op *fedreportv1.Operation) (*OperationView, error) {
	v := &OperationView{Op: op}
	for i, p := range op.GetPhases() {
		v.Windows = append(v.Windows, &Window{Label: p.GetName(), Phase: fmt.Sprint(i + 1), From: p.GetFrom(), To: p.GetTo()})
	}
	v.Windows = append(v.Windows, &Window{Label: "Whole operation", From: op.GetFrom(), To: op.GetTo()})
	for _, w := range v.Windows {
		w.MonthAligned = monthAligned(w.From, w.To)
	}

	// Newest first: the first match of each window is its latest rollup.
	req := &fedreportv1.ListRollupsRequest{PageSize: 200}
	seen := 0
	for seen < rollupScan {
		resp, err := c.ListRollups(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, r := range resp.GetRollups() {
			if !usable(r) {
				continue
			}
			for _, w := range v.Windows {
				if w.Totals == nil && matches(r, w, nil) {
					w.Totals = r
				}
				if w.ByMonth == nil && matches(r, w, byMonth) {
					w.ByMonth = r
				}
			}
		}
		seen += len(resp.GetRollups())
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	for _, w := range v.Windows {
		if w.Totals != nil {
			full, err := c.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: w.Totals.GetId(), View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
			if err != nil {
				return nil, err
			}
			w.Totals = full.GetRollup()
			w.Missing = missingOf(op, w.Totals)
			for _, mr := range w.Totals.GetMembers() {
				if mr.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK && !slices.Contains(op.GetMembers(), mr.GetMember()) {
					w.Others = append(w.Others, mr.GetMember())
				}
			}
		}
		if w.ByMonth != nil {
			w.MonthMissing = missingOf(op, w.ByMonth)
		}
	}

	for _, m := range records.Metrics() {
		row := &MetricRow{Metric: m, Name: records.MetricName(m), Label: metricLabel(m)}
		for wi, w := range v.Windows {
			cell := &MetricCell{Window: w}
			id := fmt.Sprintf("%s-w%d", row.Name, wi)
			if w.Totals != nil {
				cell.RollupID = w.Totals.GetId()
				for _, t := range w.Totals.GetTotals() {
					if t.GetMetric() == m {
						cell.Total, cell.HasTotal = valueOf(t), true
					}
				}
				if !cell.HasTotal {
					cell.HasTotal = true // no cell: nothing counted
				}
				cell.Partial = w.Partial()
				cell.PerMember = newChart(id+"-member", fmt.Sprintf("%s per member, %s (%s..%s)", row.Label, w.Label, w.From, w.To), memberPoints(op, w.Totals, m))
			}
			if w.ByMonth != nil {
				cell.PerMonth = newChart(id+"-month", fmt.Sprintf("%s per month, %s (%s..%s)", row.Label, w.Label, w.From, w.To), monthPoints(w.ByMonth, m))
			}
			row.Cells = append(row.Cells, cell)
		}
		v.Metrics = append(v.Metrics, row)
	}
	return v, nil
}

// missingOf names the operation's members whose answer is not summed in r.
func missingOf(op *fedreportv1.Operation, r *fedreportv1.Rollup) []string {
	var out []string
	for _, code := range op.GetMembers() {
		if slices.Contains(r.GetMissingMembers(), code) {
			out = append(out, code)
			continue
		}
		if len(r.GetMembers()) > 0 && !slices.ContainsFunc(r.GetMembers(), func(mr *fedreportv1.MemberResult) bool {
			return mr.GetMember() == code && mr.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK
		}) {
			out = append(out, code)
		}
	}
	return out
}

// memberPoints are the operation's members that answered in r, with their
// value of metric m; missing members have no bar (they are named above).
func memberPoints(op *fedreportv1.Operation, r *fedreportv1.Rollup, m fedreportv1.Metric) []Point {
	var out []Point
	for _, code := range op.GetMembers() {
		for _, mr := range r.GetMembers() {
			if mr.GetMember() != code || mr.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
				continue
			}
			v := Value{}
			for _, c := range mr.GetCells() {
				if c.GetMetric() == m {
					v = v.add(valueOf(c))
				}
			}
			out = append(out, Point{Label: code, Value: v})
		}
	}
	return out
}

// monthPoints are r's totals of metric m per month, in month order.
func monthPoints(r *fedreportv1.Rollup, m fedreportv1.Metric) []Point {
	byMonth := map[string]Value{}
	for _, c := range r.GetTotals() {
		if c.GetMetric() == m && c.GetMonth() != "" {
			byMonth[c.GetMonth()] = byMonth[c.GetMonth()].add(valueOf(c))
		}
	}
	// Every month of the window has a row, an empty one an exact 0.
	var out []Point
	for _, month := range monthsOf(r.GetSpec().GetFrom(), r.GetSpec().GetTo()) {
		out = append(out, Point{Label: month, Value: byMonth[month]})
	}
	return out
}

// monthsOf lists the months YYYY-MM from from's month to to's.
func monthsOf(from, to string) []string {
	if len(from) < 7 || len(to) < 7 {
		return nil
	}
	var y, m, ey, em int
	fmt.Sscanf(from[:7], "%d-%d", &y, &m)
	fmt.Sscanf(to[:7], "%d-%d", &ey, &em)
	var out []string
	for (y < ey || y == ey && m <= em) && len(out) < 1200 {
		out = append(out, fmt.Sprintf("%04d-%02d", y, m))
		if m++; m > 12 {
			y, m = y+1, 1
		}
	}
	return out
}

// monthAligned reports whether from..to starts on a month's first day and
// ends on a month's last.
func monthAligned(from, to string) bool {
	if !strings.HasSuffix(from, "-01") {
		return false
	}
	d, err := records.ParseDate(to)
	if err != nil {
		return false
	}
	next, err := records.ParseDate(to[:8] + "01")
	return err == nil && monthLast(to, d-next+1)
}

// monthLast reports whether day (1-based) is the last day of to's month.
func monthLast(to string, day uint32) bool {
	var y, m int
	fmt.Sscanf(to[:7], "%d-%d", &y, &m)
	days := [13]uint32{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && (y%4 == 0 && y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return day == days
}
