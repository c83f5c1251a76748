package ui

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Value is a cell's value as the charts and tables show it: exact, or a
// range that holds the true value when members withheld cells.
type Value struct {
	Count      uint64 // the exactly known part
	Lower      uint64 // smallest value consistent with what was disclosed
	Upper      uint64 // largest; math.MaxUint64 when nothing bounds it
	Suppressed uint32 // withheld member cells behind this one
	Pending    bool   // held at an earlier release's value
}

// valueOf reads a cell; nil is an exact 0 (no cell: nothing counted).
func valueOf(c *fedreportv1.Cell) Value {
	if c == nil {
		return Value{}
	}
	return Value{Count: c.GetCount(), Lower: c.GetLowerBound(), Upper: c.GetUpperBound(), Suppressed: c.GetSuppressedCells(), Pending: c.GetPending()}
}

// Exact reports whether the value is known exactly.
func (v Value) Exact() bool { return v.Suppressed == 0 && !v.Pending && v.Lower == v.Upper }

// Bounded reports whether the value has a finite upper bound.
func (v Value) Bounded() bool { return v.Upper != math.MaxUint64 }

// String is the value as the CLI prints it: "771", "≥ 3 (≤ 40)", "≥ 3"
// when nothing bounds it from above, "20* [21..22]" when pending.
func (v Value) String() string {
	upper := func(prefix, suffix string) string {
		if !v.Bounded() {
			return ""
		}
		return fmt.Sprintf("%s%d%s", prefix, v.Upper, suffix)
	}
	if v.Pending {
		s := strconv.FormatUint(v.Count, 10) + "*"
		if v.Lower != v.Count || v.Upper != v.Count {
			s += fmt.Sprintf(" [%d..%s]", v.Lower, upper("", ""))
		}
		return s
	}
	if v.Suppressed > 0 {
		return fmt.Sprintf("≥ %d", v.Lower) + upper(" (≤ ", ")")
	}
	return strconv.FormatUint(v.Count, 10)
}

// add sums w into v with interval arithmetic.
func (v Value) add(w Value) Value {
	up := v.Upper + w.Upper
	if !v.Bounded() || !w.Bounded() || up < v.Upper {
		up = math.MaxUint64
	}
	return Value{Count: v.Count + w.Count, Lower: v.Lower + w.Lower, Upper: up, Suppressed: v.Suppressed + w.Suppressed, Pending: v.Pending || w.Pending}
}

// Chart is a horizontal bar chart, laid out here and drawn by the "chart"
// template as inline SVG: one row per label, the exactly known part of a
// value as a solid bar, a range as a light bar with a border from its lower
// to its upper bound, and the value as text beside every bar.
type Chart struct {
	ID     string // unique in the page, for aria-labelledby
	Title  string
	Desc   string // every label and value, for screen readers
	Width  int
	Height int
	Bars   []Bar
	Axis   int // x of the bars' origin
}

// Bar is one row of a Chart, in pixels.
type Bar struct {
	Label, Text string
	Y           int // top of the bar
	TextY       int // baseline of its texts
	SolidW      int // the lower bound (the exact value when exact)
	RangeX      int // where the range starts (the lower bound's end)
	RangeW      int // 0: exact
	Open        bool
	TextX       int
}

// Chart layout, in pixels.
const (
	chartLabelW = 64
	chartBarW   = 200
	chartTextW  = 110
	chartRow    = 22
	chartBarH   = 14
	chartTop    = 4
)

// Point is one labelled value of a chart.
type Point struct {
	Label string
	Value Value
}

// newChart lays out points; the scale is the largest bound (or count)
// shown, so every bar and range fits.
func newChart(id, title string, points []Point) *Chart {
	c := &Chart{ID: id, Title: title, Width: chartLabelW + chartBarW + chartTextW, Axis: chartLabelW}
	var top uint64 = 1
	for _, p := range points {
		top = max(top, p.Value.Lower, p.Value.Count)
		if p.Value.Bounded() {
			top = max(top, p.Value.Upper)
		}
	}
	scale := func(n uint64) int { return int(math.Round(float64(n) / float64(top) * chartBarW)) }
	var desc []string
	for i, p := range points {
		v := p.Value
		b := Bar{Label: p.Label, Text: v.String(), Y: chartTop + i*chartRow}
		b.TextY = b.Y + chartBarH - 3
		lower := v.Lower
		if v.Exact() {
			lower = v.Count
		}
		b.SolidW = scale(lower)
		b.RangeX = chartLabelW + b.SolidW
		end := chartLabelW + b.SolidW
		if !v.Exact() {
			if v.Bounded() {
				b.RangeW = max(scale(v.Upper)-b.SolidW, 2)
			} else {
				b.RangeW, b.Open = chartBarW-b.SolidW, true
			}
			end = b.RangeX + b.RangeW
		}
		b.TextX = end + 4
		c.Bars = append(c.Bars, b)
		desc = append(desc, p.Label+": "+b.Text)
	}
	c.Height = chartTop*2 + len(points)*chartRow
	c.Desc = strings.Join(desc, "; ")
	return c
}
