package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// utilityCell names one cell of an answer: window, metric and group.
type utilityCell struct {
	window, table, metric, group string
}

// TestDemoReleaseUtility measures what the protected release costs on the
// demo's data: the share of cells with data that each member and the
// alliance publish exactly, per table, for the whole operation and each
// phase, against what the earlier rule (k on the quantity of each answer
// alone, no secondary suppression) published. Run with -v to print it
// (docs/privacy.md "What it costs" quotes it). It also holds the promise
// the demo relies on: every ungrouped total of the operation and of each
// phase is exact for every member.
func TestDemoReleaseUtility(t *testing.T) {
	t.Parallel()
	windows := []struct{ name, from, to string }{
		{"operation", "2020-01-01", "2020-09-30"}, {"phase 1", "2020-01-01", "2020-05-30"}, {"phase 2", "2020-06-01", "2020-09-30"},
	}
	tables := []fedreportv1.Dimension{0, fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_CHANNEL, fedreportv1.Dimension_DIMENSION_VICTIM_AGE}
	const k = node.DefaultMinCellCount
	// exact[table][member or "alliance"] counts cells with data and those exact, after and before.
	type tally struct{ cells, after, before int }
	shares := map[string]map[string]*tally{}
	allianceTruth := map[utilityCell]uint64{}
	allianceExact := map[utilityCell]bool{}
	allianceBefore := map[utilityCell]bool{}
	for _, member := range demoMembers {
		recs, err := demoRecords(member, 2020) // the demo's default --seed
		if err != nil {
			t.Fatal(err)
		}
		s, err := node.OpenStore(filepath.Join(t.TempDir(), member+".db"), node.StoreOptions{Member: member, Policy: demoPolicy()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		in, err := s.BeginIngest(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Add("demo", recs); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, w := range windows {
			for _, tab := range tables {
				req := &fedreportv1.AggregateRequest{From: w.from, To: w.to}
				tname := "total"
				if tab != 0 {
					req.GroupBy = []fedreportv1.Dimension{tab}
					tname = records.DimensionName(tab)
				}
				resp, err := s.Aggregate(req, "test")
				if err != nil {
					t.Fatal(err)
				}
				truth := map[utilityCell]uint64{}
				for _, r := range recs {
					if r.GetDate() < w.from || r.GetDate() > w.to {
						continue
					}
					c := utilityCell{w.name, tname, records.MetricName(r.GetMetric()), groupOf(r, tab)}
					truth[c] += uint64(records.Quantity(r))
				}
				got := map[utilityCell]*fedreportv1.Cell{}
				for _, c := range resp.GetCells() {
					got[utilityCell{w.name, tname, records.MetricName(c.GetMetric()), c.GetOffence() + c.GetChannel() + c.GetVictimAge()}] = c
				}
				key := w.name + " by " + tname
				if shares[key] == nil {
					shares[key] = map[string]*tally{}
				}
				if shares[key][member] == nil {
					shares[key][member] = &tally{}
				}
				tl := shares[key][member]
				for c, v := range truth {
					g := got[c]
					exact := g != nil && g.GetSuppressedCells() == 0 && g.GetCount() == v
					before := v >= k // the earlier rule: k on the answer's own count
					tl.cells++
					if exact {
						tl.after++
					}
					if before {
						tl.before++
					}
					if tab == 0 && !exact {
						t.Errorf("%s's %s total of %s is not exact (%v), want every member's totals exact", member, w.name, c.metric, g)
					}
					if _, seen := allianceExact[c]; !seen {
						allianceExact[c], allianceBefore[c] = true, true
					}
					allianceExact[c] = allianceExact[c] && exact
					allianceBefore[c] = allianceBefore[c] && before
					allianceTruth[c] += v
				}
			}
		}
	}
	for c := range allianceTruth {
		key := c.window + " by " + c.table
		if shares[key]["alliance"] == nil {
			shares[key]["alliance"] = &tally{}
		}
		tl := shares[key]["alliance"]
		tl.cells++
		if allianceExact[c] {
			tl.after++
		}
		if allianceBefore[c] {
			tl.before++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-28s %-10s %s\n", "window and table", "level", "exact cells: before -> after (cells with data)")
	for _, w := range windows {
		for _, tab := range []string{"total", "offence", "channel", "victim_age"} {
			key := w.name + " by " + tab
			for _, level := range append([]string{"alliance"}, demoMembers...) {
				tl := shares[key][level]
				if tl == nil || tl.cells == 0 {
					continue
				}
				fmt.Fprintf(&b, "%-28s %-10s %5.1f%% -> %5.1f%% (%d)\n", key, level, 100*float64(tl.before)/float64(tl.cells), 100*float64(tl.after)/float64(tl.cells), tl.cells)
			}
		}
	}
	t.Log(b.String())
	if path := os.Getenv("FEDREPORT_UTILITY_TABLE"); path != "" {
		// The benchmark's page shows this table (bench: the utility step).
		pct := func(n, of int) string { return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(of)) }
		var m strings.Builder
		m.WriteString("| window | table | member cells, all members | per member | alliance cells |\n|---|---|---|---|---|\n")
		for _, w := range windows {
			for _, tab := range []string{"total", "offence", "channel", "victim_age"} {
				key := w.name + " by " + tab
				var all tally
				lo, hi := 1.0, 0.0
				for _, member := range demoMembers {
					tl := shares[key][member]
					if tl == nil || tl.cells == 0 {
						continue
					}
					all.cells, all.before, all.after = all.cells+tl.cells, all.before+tl.before, all.after+tl.after
					share := float64(tl.after) / float64(tl.cells)
					lo, hi = min(lo, share), max(hi, share)
				}
				al := shares[key]["alliance"]
				fmt.Fprintf(&m, "| %s | %s | %s → %s | %.0f–%.0f%% | %s → %s |\n", w.name, tab,
					pct(all.before, all.cells), pct(all.after, all.cells), 100*lo, 100*hi, pct(al.before, al.cells), pct(al.after, al.cells))
			}
		}
		if err := os.WriteFile(path, []byte(m.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// groupOf is a record's value in the dimension of a one-dimension table.
func groupOf(r *fedreportv1.Record, d fedreportv1.Dimension) string {
	switch d {
	case fedreportv1.Dimension_DIMENSION_OFFENCE:
		return records.OffenceName(r.GetOffence())
	case fedreportv1.Dimension_DIMENSION_CHANNEL:
		return records.ChannelName(r.GetChannel())
	case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
		return records.VictimAgeName(r.GetVictimAge())
	}
	return ""
}
