package main

import (
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// outputFormat is the -o flag shared by every client verb that prints results.
type outputFormat string

func (f *outputFormat) AddFlags(fs *pflag.FlagSet) {
	*f = "table"
	fs.VarP((*formatValue)(f), "output", "o", "output format: table, json (the protojson of the response), yaml (the same as YAML) or csv")
}

type formatValue outputFormat

func (v *formatValue) String() string { return string(*v) }
func (v *formatValue) Type() string   { return "table|json|yaml|csv" }
func (v *formatValue) Set(s string) error {
	switch s {
	case "table", "json", "yaml", "csv":
		*v = formatValue(s)
		return nil
	}
	return fmt.Errorf("%s is not an output format (want table, json, yaml or csv)", echo.Quote(s))
}

// printYAML writes m as YAML: its protojson, field for field and in the
// same order, so that json and yaml outputs say the same thing.
func printYAML(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	return printJSONAsYAML(w, b)
}

// printJSONAsYAML writes the JSON document b as YAML, keys in their order.
func printJSONAsYAML(w io.Writer, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil { // JSON is YAML
		return err
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle turns JSON's flow style and quoting into YAML's block style
// and plain scalars; the encoder quotes a string where YAML would read it
// as something else ("1", "true", "2020-01-01").
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// printJSON writes m as indented protojson, as etcdctl's JSON printer does.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// formatCell renders a cell's value: the exact count, or its honest bounds
// ("≥ 3 (≤ 40)", or "≥ 3" when nothing published bounds it from above). A
// pending cell (held at an earlier release's value) shows that value with
// pendingMark, and its bounds when they are not that value: "20* [21..22]".
func formatCell(c *fedreportv1.Cell) string {
	if c == nil {
		return "0"
	}
	upper := func(prefix, suffix string) string {
		if c.GetUpperBound() == math.MaxUint64 {
			return ""
		}
		return fmt.Sprintf("%s%d%s", prefix, c.GetUpperBound(), suffix)
	}
	if c.GetPending() {
		v := strconv.FormatUint(c.GetCount(), 10) + pendingMark
		if c.GetLowerBound() != c.GetCount() || c.GetUpperBound() != c.GetCount() {
			v += fmt.Sprintf(" [%d..%s]", c.GetLowerBound(), upper("", ""))
		}
		return v
	}
	if c.GetSuppressedCells() > 0 {
		return fmt.Sprintf("≥ %d", c.GetLowerBound()) + upper(" (≤ ", ")")
	}
	return strconv.FormatUint(c.GetCount(), 10)
}

// pendingMark follows a pending cell's value in a table; pendingLegend,
// under the table, says what it means.
const (
	pendingMark   = "*"
	pendingLegend = "* held at the value of an earlier release while a change too small to publish is pending; the bounds hold the true value"
)

// addCell adds c into sum, keeping bounds honest: the sum is pending when
// any cell in it is.
func addCell(sum, c *fedreportv1.Cell) {
	sum.Count += c.GetCount()
	sum.SuppressedCells += c.GetSuppressedCells()
	sum.LowerBound += c.GetLowerBound()
	sum.UpperBound += c.GetUpperBound()
	sum.Pending = sum.Pending || c.GetPending()
}

// anyPending reports whether r holds a pending cell, in its totals or a
// member's cells.
func anyPending(r *fedreportv1.Rollup) bool {
	pending := func(c *fedreportv1.Cell) bool { return c.GetPending() }
	if slices.ContainsFunc(r.GetTotals(), pending) {
		return true
	}
	return slices.ContainsFunc(r.GetMembers(), func(m *fedreportv1.MemberResult) bool { return slices.ContainsFunc(m.GetCells(), pending) })
}

// metricsOf returns the metrics a rollup asked for (all when none were named).
func metricsOf(spec *fedreportv1.RollupSpec) []fedreportv1.Metric {
	if len(spec.GetMetrics()) > 0 {
		return spec.GetMetrics()
	}
	return records.Metrics()
}

// sumByMetric sums cells per metric.
func sumByMetric(cells []*fedreportv1.Cell) map[fedreportv1.Metric]*fedreportv1.Cell {
	out := map[fedreportv1.Metric]*fedreportv1.Cell{}
	for _, c := range cells {
		s := out[c.GetMetric()]
		if s == nil {
			s = &fedreportv1.Cell{Metric: c.GetMetric()}
			out[c.GetMetric()] = s
		}
		addCell(s, c)
	}
	return out
}

func stateName(s fedreportv1.RollupState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLUP_STATE_"))
}

func memberStatusName(s fedreportv1.MemberStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MEMBER_STATUS_"))
}

func dimNames(dims []fedreportv1.Dimension) []string {
	out := make([]string, len(dims))
	for i, d := range dims {
		out[i] = records.DimensionName(d)
	}
	return out
}

// printRollupTable prints a rollup for people: one row per member with its
// per-metric sums, the total row, then the totals by group when grouped.
// Where the rollup keeps no count (see holdsCounts) it prints "-".
func printRollupTable(w io.Writer, r *fedreportv1.Rollup, title string) error {
	spec := r.GetSpec()
	metrics := metricsOf(spec)
	if title != "" {
		fmt.Fprintf(w, "%s\n", title)
	}
	fmt.Fprintf(w, "rollup %s  %s  %s..%s", r.GetId(), strings.ToUpper(stateName(r.GetState())), spec.GetFrom(), spec.GetTo())
	if len(spec.GetGroupBy()) > 0 {
		fmt.Fprintf(w, "  by %s", strings.Join(dimNames(spec.GetGroupBy()), ","))
	}
	fmt.Fprintf(w, "  requested by %s%s  %s\n", r.GetRequestedBy(), forCallersRollup(r), tookOf(r))
	switch {
	case len(r.GetMembers()) == 0 && r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_RUNNING:
		fmt.Fprintln(w, "no member results yet")
	case len(r.GetMembers()) == 0:
		// A rollup cut off by a restart was stored before any member answered.
		fmt.Fprintln(w, "no member results stored")
	default:
		if err := printMemberTable(w, r, metrics); err != nil {
			return err
		}
	}
	switch r.GetState() {
	case fedreportv1.RollupState_ROLLUP_STATE_PARTIAL:
		fmt.Fprintf(w, "PARTIAL: totals cover %d of %d members; missing %s. This is not the alliance total.\n",
			len(r.GetMembers())-len(r.GetMissingMembers()), len(r.GetMembers()), strings.Join(r.GetMissingMembers(), ", "))
	case fedreportv1.RollupState_ROLLUP_STATE_FAILED, fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED:
		fmt.Fprintf(w, "%s: %s (no totals)\n", strings.ToUpper(stateName(r.GetState())), r.GetFailureReason())
	}
	if slices.ContainsFunc(r.GetTotals(), func(c *fedreportv1.Cell) bool { return c.GetSuppressedCells() > 0 }) {
		fmt.Fprintln(w, "≥ n (≤ m): some member cells were withheld under their member's disclosure policy; the value lies in [n, m].")
	}
	if len(spec.GetGroupBy()) > 0 && holdsCounts(r) {
		if err := printCellsTable(w, spec.GetGroupBy(), metrics, r.GetTotals()); err != nil {
			return err
		}
	}
	if holdsCounts(r) && anyPending(r) {
		fmt.Fprintln(w, pendingLegend)
	}
	return nil
}

// forCallersRollup names, for a rollup run to answer another coordinator as
// a member, that coordinator's rollup, as in " for coordinator/main's rollup
// r00000004": the asking coordinator's ids are not this one's, so the id
// says whose it is. It is "" for a rollup started here.
func forCallersRollup(r *fedreportv1.Rollup) string {
	id := r.GetCallerRollupId()
	if id == "" {
		return ""
	}
	who := r.GetRequestedBy()
	if caller, err := identity.Parse(who); err == nil {
		who = caller.Path()
	}
	return fmt.Sprintf(" for %s's rollup %s", who, id)
}

// holdsCounts reports whether r keeps counts: a COMPLETE or PARTIAL rollup
// keeps its totals and each ok member's cells. A FAILED or INTERRUPTED one
// keeps neither (the coordinator withholds the partial sum), and a RUNNING
// one has none yet: for those a count is printed as "-", never as 0.
func holdsCounts(r *fedreportv1.Rollup) bool {
	return r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_COMPLETE || r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_PARTIAL
}

// tookOf says how long r took, or, without a finish time (a rollup still
// running or cut off by a restart), that it did not finish.
func tookOf(r *fedreportv1.Rollup) string {
	switch {
	case r.GetFinishedAt() == nil && r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_RUNNING:
		return "started " + formatTime(r.GetStartedAt().AsTime()) + ", not finished yet"
	case r.GetFinishedAt() == nil || r.GetStartedAt() == nil:
		return "started " + formatTime(r.GetStartedAt().AsTime()) + ", did not finish"
	}
	return "took " + r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Round(time.Millisecond).String()
}

// printMemberTable prints one row per member with its per-metric sums (and,
// for a member that is a coordinator, the rollup of its own that answered),
// then the total row when r holds totals, then why each missing member is
// missing.
func printMemberTable(w io.Writer, r *fedreportv1.Rollup, metrics []fedreportv1.Metric) error {
	held := holdsCounts(r)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{"MEMBER", "STATUS"}
	for _, m := range metrics {
		header = append(header, strings.ToUpper(records.MetricName(m)))
	}
	header = append(header, "DATA_VERSION", "LATENCY")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, mr := range r.GetMembers() {
		row := []string{mr.GetMember(), memberStatusName(mr.GetStatus())}
		sums := sumByMetric(mr.GetCells())
		for _, m := range metrics {
			if mr.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK || !held {
				row = append(row, "-")
				continue
			}
			row = append(row, formatCell(sums[m]))
		}
		version := "-"
		if mr.GetStatus() == fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			version = strconv.FormatUint(mr.GetDataVersion(), 10)
		}
		row = append(row, version, mr.GetLatency().AsDuration().Round(100*time.Microsecond).String())
		if id := mr.GetMemberRollupId(); id != "" {
			// A regional coordinator's rollup that computed the answer:
			// its id, not this coordinator's, so it says whose.
			row = append(row, fmt.Sprintf("(%s's rollup %s)", mr.GetMember(), id))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if held {
		row := []string{"TOTAL", ""}
		sums := sumByMetric(r.GetTotals())
		for _, m := range metrics {
			row = append(row, formatCell(sums[m]))
		}
		fmt.Fprintln(tw, strings.Join(append(row, "", ""), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, mr := range r.GetMembers() {
		if mr.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			fmt.Fprintf(w, "  %s %s: %s\n", mr.GetMember(), memberStatusName(mr.GetStatus()), mr.GetReason())
		}
	}
	return nil
}

// printCellsTable prints cells with one row per group and a column per metric.
func printCellsTable(w io.Writer, dims []fedreportv1.Dimension, metrics []fedreportv1.Metric, cells []*fedreportv1.Cell) error {
	type row struct {
		key    []string
		values map[fedreportv1.Metric]*fedreportv1.Cell
	}
	var rows []*row
	index := map[string]*row{}
	for _, c := range cells {
		key := make([]string, len(dims))
		for i, d := range dims {
			key[i] = records.CellValue(c, d)
		}
		k := strings.Join(key, "\x00")
		r := index[k]
		if r == nil {
			r = &row{key: key, values: map[fedreportv1.Metric]*fedreportv1.Cell{}}
			index[k] = r
			rows = append(rows, r)
		}
		r.values[c.GetMetric()] = c
	}
	slices.SortFunc(rows, func(a, b *row) int { return slices.Compare(a.key, b.key) })
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{}
	for _, d := range dimNames(dims) {
		header = append(header, strings.ToUpper(d))
	}
	for _, m := range metrics {
		header = append(header, strings.ToUpper(records.MetricName(m)))
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		line := slices.Clone(r.key)
		for _, m := range metrics {
			line = append(line, formatCell(r.values[m]))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// csvCellHeader is the header of every CSV of cells; bounds are separate
// fields so no consumer can mistake a bounded total for an exact one. A
// pending cell is not exact: its count is an earlier release's value, and
// its bounds hold the true one.
var csvCellHeader = []string{"rollup_id", "state", "scope", "member", "month", "offence", "channel", "victim_age", "metric", "exact", "count", "suppressed_cells", "lower_bound", "upper_bound", "pending"}

func csvCellRow(r *fedreportv1.Rollup, scope string, c *fedreportv1.Cell) []string {
	return []string{
		r.GetId(), stateName(r.GetState()), scope, c.GetMember(), c.GetMonth(), c.GetOffence(), c.GetChannel(), c.GetVictimAge(),
		records.MetricName(c.GetMetric()), strconv.FormatBool(c.GetSuppressedCells() == 0 && !c.GetPending()),
		strconv.FormatUint(c.GetCount(), 10), strconv.FormatUint(uint64(c.GetSuppressedCells()), 10),
		strconv.FormatUint(c.GetLowerBound(), 10), strconv.FormatUint(c.GetUpperBound(), 10),
		strconv.FormatBool(c.GetPending()),
	}
}

// printRollupCSV writes the totals (scope "total") and each member's cells
// (scope "member") of a rollup. A rollup with no cell to write (failed,
// interrupted, running, or with nothing counted) gets one row of scope
// "rollup" with its id and state and no cell fields, so that its state is
// in the file.
func printRollupCSV(w io.Writer, rs ...*fedreportv1.Rollup) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvCellHeader); err != nil {
		return err
	}
	for _, r := range rs {
		rows := 0
		for _, c := range r.GetTotals() {
			_ = cw.Write(csvCellRow(r, "total", c))
			rows++
		}
		for _, mr := range r.GetMembers() {
			for _, c := range mr.GetCells() {
				row := csvCellRow(r, "member", c)
				row[3] = mr.GetMember()
				_ = cw.Write(row)
				rows++
			}
		}
		if rows == 0 {
			row := make([]string, len(csvCellHeader))
			row[0], row[1], row[2] = r.GetId(), stateName(r.GetState()), "rollup"
			_ = cw.Write(row)
		}
	}
	cw.Flush()
	return cw.Error()
}

// printRollup prints a rollup; resp is the response message that carried it,
// which is what -o json prints.
func printRollup(w io.Writer, format outputFormat, resp proto.Message, r *fedreportv1.Rollup, title string) error {
	switch format {
	case "json":
		return printJSON(w, resp)
	case "yaml":
		return printYAML(w, resp)
	case "csv":
		return printRollupCSV(w, r)
	}
	return printRollupTable(w, r, title)
}

// plural says n of a thing, in the singular for 1: "1 record", "3 records".
func plural(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.FormatUint(n, 10) + " " + thing + "s"
}

func shortHash(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func formatTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
