package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// update rewrites the golden files under testdata/ with what the printers
// print now: go test ./cmd/fedreport -run Golden -update, then read the diff.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what is printed now (run with -update and read the diff):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// compactJSON removes the insignificant whitespace of b.
func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// normalizeJSON indents protojson output as encoding/json does: protojson
// varies its whitespace from one build to the next, on purpose (its output
// is not stable), so the golden files hold the JSON as encoding/json
// indents it.
func normalizeJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var norm bytes.Buffer
	if err := json.Indent(&norm, compactJSON(t, b), "", "  "); err != nil {
		t.Fatal(err)
	}
	return append(norm.Bytes(), '\n')
}

// pendingRollup is a rollup by member and offence over three members: FR
// publishes exactly, IT withholds a cell with the bounds its release gives
// (0..7), ES holds a cell at an earlier release's value while a small change
// is pending (20, truly 21..22), and GB did not answer.
func pendingRollup() *fedreportv1.Rollup {
	started := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	arrests := fedreportv1.Metric_METRIC_ARRESTS
	cell := func(member, offence string, count, lower, upper uint64, suppressed uint32, pending bool) *fedreportv1.Cell {
		return &fedreportv1.Cell{Metric: arrests, Member: member, Offence: offence, Count: count, LowerBound: lower, UpperBound: upper, SuppressedCells: suppressed, Pending: pending}
	}
	member := func(code string, release uint64, cells ...*fedreportv1.Cell) *fedreportv1.MemberResult {
		for _, c := range cells {
			c.Member = ""
		}
		return &fedreportv1.MemberResult{Member: code, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK, DataVersion: 4, ReleaseVersion: release,
			Latency: durationpb.New(3 * time.Millisecond), MinCellCount: 5, SoftwareVersion: "test", Cells: cells}
	}
	return &fedreportv1.Rollup{
		Id: "r00000007", State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL, RequestedBy: "spiffe://isa/operator/alice",
		Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30", Metrics: []fedreportv1.Metric{arrests},
			GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MEMBER, fedreportv1.Dimension_DIMENSION_OFFENCE}},
		StartedAt: timestamppb.New(started), FinishedAt: timestamppb.New(started.Add(12 * time.Millisecond)),
		Members: []*fedreportv1.MemberResult{
			member("FR", 3, cell("", "grooming", 40, 40, 40, 0, false), cell("", "sextortion", 12, 12, 12, 0, false)),
			member("IT", 5, cell("", "grooming", 0, 0, 7, 1, false)),
			member("ES", 9, cell("", "grooming", 20, 21, 22, 0, true)),
			{Member: "GB", Status: fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, Reason: "connection refused", Latency: durationpb.New(time.Second)},
		},
		Totals: []*fedreportv1.Cell{
			cell("FR", "grooming", 40, 40, 40, 0, false), cell("FR", "sextortion", 12, 12, 12, 0, false),
			cell("IT", "grooming", 0, 0, 7, 1, false),
			cell("ES", "grooming", 20, 21, 22, 0, true),
		},
		MissingMembers: []string{"GB"},
	}
}

// TestRollupOutputGolden prints a rollup with exact, withheld and pending
// cells in each output format: the table marks the pending cell with * and
// its bounds and explains the mark under the table; CSV has a pending
// column (and the pending cell is not exact); JSON has "pending": true.
func TestRollupOutputGolden(t *testing.T) {
	t.Parallel()
	r := pendingRollup()
	for _, format := range []outputFormat{"table", "csv", "json", "yaml"} {
		var b bytes.Buffer
		if err := printRollup(&b, format, &fedreportv1.StartRollupResponse{Rollup: r}, r, ""); err != nil {
			t.Fatal(err)
		}
		got := b.Bytes()
		if format == "json" {
			got = normalizeJSON(t, got)
		}
		golden(t, "rollup_pending."+string(format), got)
	}
}
