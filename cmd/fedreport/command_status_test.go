package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestStatusShowsWhatTheNodeHolds runs `fedreport status` against a real
// node before and after an ingest: records, data version and the time of
// the last write follow the ingest, and -o json and -o yaml say the same.
func TestStatusShowsWhatTheNodeHolds(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	out := mustRunCLI(t, "status", "--node", addr)
	for _, want := range []string{"MEMBER            FR\n", "RECORDS           0\n", "LAST_WRITE        -\n", "MIN_CELL_COUNT    5\n", "TABLES            offence;channel;victim_age\n", "SOFTWARE_VERSION  test\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status of a new node: want %q in:\n%s", want, out)
		}
	}
	before := time.Now()
	mustRunCLI(t, "ingest", "--node", addr, writeFile(t, "fr.csv", header+"FR-1,arrests,2020-01-02,,,,1\nFR-2,arrests,2020-01-03,,,,1\n"))
	var st fedreportv1.GetNodeStatsResponse
	if err := protojson.Unmarshal([]byte(mustRunCLI(t, "status", "--node", addr, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.GetRecords() != 2 || st.GetDataVersion() != 1 || st.GetFileSizeBytes() <= 0 || st.GetLastWriteTime().AsTime().Before(before.Add(-time.Second)) {
		t.Errorf("status -o json after an ingest of 2 records: got %v, want 2 records, data version 1, a file size and the ingest's time", &st)
	}
	if y := mustRunCLI(t, "status", "--node", addr, "-o", "yaml"); !strings.Contains(y, "records: \"2\"\n") || !strings.Contains(y, "member: FR\n") {
		t.Errorf("status -o yaml: want the records and the member:\n%s", y)
	}
}

// TestStatusOutputGolden prints one node's status in every format.
func TestStatusOutputGolden(t *testing.T) {
	t.Parallel()
	st := &fedreportv1.GetNodeStatsResponse{
		Member: "FR", Records: 5000, CounterCells: 1432, Disclosures: 12, DataVersion: 3, SchemaVersion: 1, FileSizeBytes: 2203648,
		LastWriteTime: timestamppb.New(time.Date(2026, 12, 6, 4, 20, 0, 0, time.UTC)), SoftwareVersion: "v1.4.0+6f7ac81d0c1e",
		Policy: &fedreportv1.Policy{MinCellCount: 5, EarliestDate: "2020-01-01", DominancePercent: 80,
			Tables:  []*fedreportv1.Table{{Dimensions: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE}}, {Dimensions: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_CHANNEL}}},
			Periods: []*fedreportv1.Period{{Name: "phase-1", From: "2020-01-01", To: "2020-05-30"}}},
	}
	for _, format := range []outputFormat{"table", "csv", "json", "yaml"} {
		var b bytes.Buffer
		if err := printStatus(&b, format, st); err != nil {
			t.Fatal(err)
		}
		got := b.Bytes()
		if format == "json" {
			got = normalizeJSON(t, got)
		}
		golden(t, "status."+string(format), got)
	}
}
