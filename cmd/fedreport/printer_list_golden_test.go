package main

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// membersResponse lists three members as a coordinator knows them: FR, a
// node that described itself (k, tables, named periods); EU, a regional
// coordinator answering as one member; and GB, never reached, whose data
// version, software version, policy and kind are unknown and whose error
// holds a comma and a quote for the CSV to escape.
func membersResponse() *fedreportv1.ListMembersResponse {
	contact := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	offence := fedreportv1.Dimension_DIMENSION_OFFENCE
	channel := fedreportv1.Dimension_DIMENSION_CHANNEL
	age := fedreportv1.Dimension_DIMENSION_VICTIM_AGE
	return &fedreportv1.ListMembersResponse{Members: []*fedreportv1.Member{
		{Code: "FR", Address: "node.fr.example:7443", Reachable: true, LastContact: timestamppb.New(contact),
			LastDataVersion: 7, SoftwareVersion: "v1.4.0", Kind: "node",
			Policy: &fedreportv1.Policy{MinCellCount: 5, EarliestDate: "2020-01-01",
				Tables: []*fedreportv1.Table{{Dimensions: []fedreportv1.Dimension{offence}}, {Dimensions: []fedreportv1.Dimension{channel}}, {Dimensions: []fedreportv1.Dimension{age}}},
				Periods: []*fedreportv1.Period{
					{Name: "isa-2020", From: "2020-01-01", To: "2020-09-30"},
					{Name: "phase-1", From: "2020-01-01", To: "2020-05-30"},
				}}},
		{Code: "EU", Address: "coord.eu.example:7500", Reachable: true, LastContact: timestamppb.New(contact.Add(-time.Minute)),
			LastDataVersion: 0, SoftwareVersion: "v1.4.0", Kind: "coordinator",
			Policy: &fedreportv1.Policy{MinCellCount: 10,
				Tables: []*fedreportv1.Table{{Dimensions: []fedreportv1.Dimension{offence, channel}}}}},
		{Code: "GB", Address: "node.gb.example:7443", Reachable: false,
			LastError: `dial tcp 10.0.0.9:7443: connect: connection refused, "retrying"`},
	}}
}

// TestMembersOutputGolden prints the member list in each output format:
// the table puts KIND beside the member code, the CSV keeps kind as its
// last column, and what a member never said is "-", not 0.
func TestMembersOutputGolden(t *testing.T) {
	t.Parallel()
	resp := membersResponse()
	for _, format := range []outputFormat{"table", "csv", "json", "yaml"} {
		var b bytes.Buffer
		if err := printMembers(&b, format, resp); err != nil {
			t.Fatal(err)
		}
		got := b.Bytes()
		if format == "json" {
			got = normalizeJSON(t, got)
		}
		golden(t, "members."+string(format), got)
	}
}

// rollupsResponse is a page of the rollup history, newest first: a partial
// rollup by offence with a member missing, a complete one a larger
// coordinator asked for (its caller's rollup id), one interrupted by a
// restart (no member results: MEMBERS_OK is "-"), and a failed one with a
// subset of the metrics; and a token for the next page.
func rollupsResponse() *fedreportv1.ListRollupsResponse {
	at := func(minute int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 11, 27, 10, minute, 0, 0, time.UTC))
	}
	arrests := fedreportv1.Metric_METRIC_ARRESTS
	victims := fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
	ok := func(code string, cells ...*fedreportv1.Cell) *fedreportv1.MemberResult {
		return &fedreportv1.MemberResult{Member: code, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK, DataVersion: 3, ReleaseVersion: 3,
			Latency: durationpb.New(2 * time.Millisecond), MinCellCount: 5, SoftwareVersion: "test", Cells: cells}
	}
	exact := func(m fedreportv1.Metric, offence string, n uint64) *fedreportv1.Cell {
		return &fedreportv1.Cell{Metric: m, Offence: offence, Count: n, LowerBound: n, UpperBound: n}
	}
	return &fedreportv1.ListRollupsResponse{
		Rollups: []*fedreportv1.Rollup{
			{Id: "r00000012", State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL, RequestedBy: "spiffe://isa/operator/alice",
				Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30", Metrics: []fedreportv1.Metric{arrests},
					GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE}},
				StartedAt: at(40), FinishedAt: at(41),
				Members: []*fedreportv1.MemberResult{
					ok("FR", exact(arrests, "grooming", 40), exact(arrests, "sextortion", 12)),
					ok("IT", exact(arrests, "grooming", 9)),
					{Member: "GB", Status: fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, Reason: "no answer within 10s", Latency: durationpb.New(10 * time.Second)},
				},
				Totals:         []*fedreportv1.Cell{exact(arrests, "grooming", 49), exact(arrests, "sextortion", 12)},
				MissingMembers: []string{"GB"}},
			{Id: "r00000011", State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, RequestedBy: "spiffe://isa/coordinator/main",
				CallerRollupId: "r00000004",
				Spec:           &fedreportv1.RollupSpec{From: "2020-06-01", To: "2020-09-30"},
				StartedAt:      at(30), FinishedAt: at(30),
				Members: []*fedreportv1.MemberResult{ok("FR", exact(arrests, "", 120), exact(victims, "", 88))},
				Totals:  []*fedreportv1.Cell{exact(arrests, "", 120), exact(victims, "", 88)}},
			{Id: "r00000010", State: fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED, RequestedBy: "schedule/weekly",
				Spec:      &fedreportv1.RollupSpec{From: "2026-11-16", To: "2026-11-22"},
				StartedAt: at(20), FinishedAt: at(21), FailureReason: "the coordinator stopped before the rollup finished"},
			{Id: "r00000009", State: fedreportv1.RollupState_ROLLUP_STATE_FAILED, RequestedBy: "spiffe://isa/operator/alice",
				Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-05-30", Metrics: []fedreportv1.Metric{arrests, victims},
					GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MEMBER, fedreportv1.Dimension_DIMENSION_MONTH}},
				StartedAt: at(10), FinishedAt: at(10), FailureReason: "quorum not met: 1 of 3 members answered, 2 required",
				Members: []*fedreportv1.MemberResult{
					ok("FR"),
					{Member: "IT", Status: fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, Reason: "connection refused"},
					{Member: "GB", Status: fedreportv1.MemberStatus_MEMBER_STATUS_UNREACHABLE, Reason: "connection refused"},
				},
				MissingMembers: []string{"IT", "GB"}},
		},
		NextPageToken: "r00000009",
	}
}

// TestRollupListOutputGolden prints a page of `fedreport rollups` in each
// output format: the table's one line a rollup (MEMBERS_OK, the caller's
// rollup, "all" metrics) and the next-page hint, which keeps the listing's
// --limit and --state; the CSV, the table's rows and columns; the JSON and
// YAML response.
func TestRollupListOutputGolden(t *testing.T) {
	t.Parallel()
	resp := rollupsResponse()
	for _, format := range []outputFormat{"table", "csv", "json", "yaml"} {
		var b bytes.Buffer
		if err := printRollupList(&b, format, resp, nextPageHint(50, "partial")); err != nil {
			t.Fatal(err)
		}
		got := b.Bytes()
		if format == "json" {
			got = normalizeJSON(t, got)
		}
		golden(t, "rollups."+string(format), got)
	}
	if got, want := nextPageHint(defaultRollupsLimit, "")("r00000009"), "fedreport rollups --page-token r00000009"; got != want {
		t.Errorf("hint with the default limit and no state: got %q, want %q", got, want)
	}
}
