package ui

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var (
	arrests = fedreportv1.Metric_METRIC_ARRESTS
	victims = fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
)

func cell(m fedreportv1.Metric, n uint64) *fedreportv1.Cell {
	return &fedreportv1.Cell{Metric: m, Count: n, LowerBound: n, UpperBound: n}
}

// reportFixture is an operation of two phases over FR, IT and SN: phase 1
// complete, phase 2 partial (SN did not answer), the whole operation
// complete with a cell FR withheld, and the whole operation by month.
func reportFixture() *fakeClient {
	op := &fedreportv1.Operation{Name: "isa-2020", Title: "ISA 2020", From: "2020-01-01", To: "2020-09-30", Members: []string{"FR", "IT", "SN"},
		// GB answers too (a rollup asks every registered member) but is not listed.
		Phases: []*fedreportv1.OperationPhase{{Name: "phase 1", From: "2020-01-01", To: "2020-05-30"}, {Name: "phase 2", From: "2020-06-01", To: "2020-09-30"}}}
	ok := func(code string, cells ...*fedreportv1.Cell) *fedreportv1.MemberResult {
		return &fedreportv1.MemberResult{Member: code, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK, Cells: cells}
	}
	withheld := &fedreportv1.Cell{Metric: victims, SuppressedCells: 1, LowerBound: 1, UpperBound: 4}
	done := timestamppb.New(timestamppb.Now().AsTime())
	rollups := []*fedreportv1.Rollup{
		{Id: "r00000006", State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, FinishedAt: done,
			Spec:   &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", GroupBy: byMonth},
			Totals: []*fedreportv1.Cell{{Metric: arrests, Month: "2020-01", Count: 70, LowerBound: 70, UpperBound: 70}, {Metric: arrests, Month: "2020-02", SuppressedCells: 2, LowerBound: 2, UpperBound: math.MaxUint64}}},
		{Id: "r00000005", State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, FinishedAt: done,
			Spec:    &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"},
			Totals:  []*fedreportv1.Cell{cell(arrests, 771), {Metric: victims, Count: 540, SuppressedCells: 1, LowerBound: 541, UpperBound: 544}},
			Members: []*fedreportv1.MemberResult{ok("FR", cell(arrests, 500), withheld), ok("IT", cell(arrests, 200), cell(victims, 300)), ok("SN", cell(arrests, 71), cell(victims, 240))}},
		{Id: "r00000004", State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL, FinishedAt: done, MissingMembers: []string{"SN"},
			Spec:   &fedreportv1.RollupSpec{From: "2020-06-01", To: "2020-09-30"},
			Totals: []*fedreportv1.Cell{cell(arrests, 250)},
			Members: []*fedreportv1.MemberResult{ok("FR", cell(arrests, 200)), ok("IT", cell(arrests, 50)),
				{Member: "SN", Status: fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, Reason: "no answer within 10s"}}},
		{Id: "r00000003", State: fedreportv1.RollupState_ROLLUP_STATE_FAILED, Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30"}},
		{Id: "r00000002", State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, FinishedAt: done,
			Spec:    &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30"},
			Totals:  []*fedreportv1.Cell{cell(arrests, 463)},
			Members: []*fedreportv1.MemberResult{ok("FR", cell(arrests, 300)), ok("IT", cell(arrests, 150)), ok("SN", cell(arrests, 13)), ok("GB")}},
		// An older rollup of phase 1: not the latest, so not shown.
		{Id: "r00000001", State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30"}, Totals: []*fedreportv1.Cell{cell(arrests, 400)}},
	}
	byID := map[string]*fedreportv1.Rollup{}
	for _, r := range rollups {
		byID[r.GetId()] = r
	}
	return &fakeClient{
		ops: []*fedreportv1.Operation{op},
		list: func(req *fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error) {
			// Two pages, to see the view follow the token.
			if req.GetPageToken() == "" {
				return &fedreportv1.ListRollupsResponse{Rollups: rollups[:2], NextPageToken: "p2"}, nil
			}
			return &fedreportv1.ListRollupsResponse{Rollups: rollups[2:]}, nil
		},
		get: func(req *fedreportv1.GetRollupRequest) (*fedreportv1.GetRollupResponse, error) {
			return &fedreportv1.GetRollupResponse{Rollup: byID[req.GetId()]}, nil
		},
	}
}

// TestReportIsSelfContained: the report refers to nothing outside itself,
// no stylesheet, script, image, frame, form or link but anchors within it.
func TestReportIsSelfContained(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteReport(t.Context(), reportFixture(), "isa-2020", &buf); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "link", "iframe", "img", "object", "embed", "form", "base", "video", "audio", "source":
				t.Errorf("the report has a <%s> element", n.Data)
			case "style":
				if css := n.FirstChild.Data; strings.Contains(css, "url(") || strings.Contains(css, "@import") {
					t.Errorf("the report's styles load something: %q", css)
				}
			}
			for _, a := range n.Attr {
				switch strings.ToLower(strings.TrimPrefix(a.Key, "xlink:")) {
				case "href", "src", "action", "srcset", "poster", "data", "formaction", "background", "ping":
					if !strings.HasPrefix(a.Val, "#") {
						t.Errorf("<%s %s=%q> refers outside the report", n.Data, a.Key, a.Val)
					}
				case "style":
					if strings.Contains(a.Val, "url(") {
						t.Errorf("<%s style=%q> loads something", n.Data, a.Val)
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !strings.Contains(buf.String(), "@media print") {
		t.Error("the report has no print stylesheet")
	}
}

// TestReportNumbersAreTheRollupsItNames: every total the report shows is
// the total of the rollup it names; the partial phase is shown as the sum
// of the members that answered, with the missing member named, never as a
// total; a withheld cell is shown with its bounds.
func TestReportNumbersAreTheRollupsItNames(t *testing.T) {
	t.Parallel()
	c := reportFixture()
	var buf bytes.Buffer
	if err := WriteReport(t.Context(), c, "isa-2020", &buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		attr := map[string]string{}
		for _, a := range n.Attr {
			attr[a.Key] = a.Val
		}
		if id, ok := attr["data-rollup"]; ok && n.Type == html.ElementNode && n.Data == "p" {
			resp, _ := c.get(&fedreportv1.GetRollupRequest{Id: id})
			want := Value{}
			for _, t := range resp.GetRollup().GetTotals() {
				if fmt.Sprint(t.GetMetric()) == "METRIC_"+strings.ToUpper(attr["data-metric"]) {
					want = valueOf(t)
				}
			}
			if attr["data-value"] != want.String() || attr["data-lower"] != fmt.Sprint(want.Lower) || attr["data-upper"] != fmt.Sprint(want.Upper) {
				t.Errorf("%s %s: shows %s [%s, %s], the rollup says %s", id, attr["data-metric"], attr["data-value"], attr["data-lower"], attr["data-upper"], want)
			}
			var text strings.Builder
			var collect func(*html.Node)
			collect = func(n *html.Node) {
				if n.Type == html.TextNode {
					text.WriteString(n.Data)
				}
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					collect(c)
				}
			}
			collect(n)
			if !strings.Contains(text.String(), want.String()) {
				t.Errorf("%s %s: the text %q does not show %s", id, attr["data-metric"], text.String(), want)
			}
			if partial := strings.Contains(attr["class"], "partial"); partial != (id == "r00000004") ||
				partial && !strings.Contains(text.String(), "not the alliance total") {
				t.Errorf("%s: %q: only the partial rollup r00000004, and it always, is said not to be the alliance total", id, text.String())
			}
			checked++
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if want := 3 * 5; checked != want {
		t.Errorf("checked %d totals, want %d (3 windows × 5 metrics)", checked, want)
	}
	for _, want := range []string{
		"r00000002", "r00000004", "r00000005", "r00000006", // the rollups shown, by id
		"Missing: <strong>SN</strong>",           // the partial phase names its missing member above the chart
		"≥ 541 (≤ 544)",                          // a total with a withheld cell, as a range
		`data-label="FR" data-value="≥ 1 (≤ 4)"`, // FR's withheld victims as a range bar
		`data-label="2020-02" data-value="≥ 2"`,  // a month with no upper bound
		"Not published by month",                 // phase 1 ends inside a month
		"also counted, not listed as taking part: GB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not contain %q", want)
		}
	}
	if strings.Contains(out, "r00000001") || strings.Contains(out, "r00000003") {
		t.Error("the report shows an older or a failed rollup")
	}
}
