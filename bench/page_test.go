package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPageHoldsTheWholeRun checks that the page written from a run has the
// machine, the commit and the command, one table row for each of the run's
// rows, the run's notes and the known limits.
func TestPageHoldsTheWholeRun(t *testing.T) {
	t.Parallel()
	r := &Result{
		Command: "go run ./bench --write BENCHMARKS.md",
		Date:    "2026-12-06 05:00 UTC",
		Commit:  "0123abcd (clean)",
		Machine: Machine{CPUs: 2, CPUModel: "AMD EPYC", MemoryMB: 24105, Kernel: "Linux 6.18", GoVersion: "go1.26.8",
			LoadStart: "0.50 0.40 0.30", LoadEnd: "1.50 1.40 1.30"},
		PostgreSQL: PostgreSQLInfo{Version: "postgres (PostgreSQL) 15.18", Settings: "defaults"},
		Steps:      allSteps,
	}
	r.Ingest.Records = maxRecords
	r.Ingest.Seq = IngestRun{NodeRecordsPerSec: 450_000, PGRecordsPerSec: 300_000, Ratio: 1.5}
	r.Rollup.Members = 200
	r.Rollup.Tmpfs.Skipped = "/dev/shm not found"
	r.Throughput = ThroughputResult{Concurrency: 64, GetRollup: 20_000, Health: 40_000, Ratio: 0.5}
	r.Targets = r.rows()
	r.Utility = "| window | table | member cells, all members | per member | alliance cells |\n|---|---|---|---|---|\n| operation | offence | 90% → 61% | 6–100% | 40% → 3% |\n"

	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("the previous run's page, much longer than the next one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.writePage(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		"| commit | 0123abcd (clean) |",
		"| command | `go run ./bench --write BENCHMARKS.md` |",
		"| CPU | 2 × AMD EPYC |",
		"| memory | 24,105 MB |",
		"| load average (1, 5, 15 min) | 0.50 0.40 0.30 at the start, 1.50 1.40 1.30 at the end |",
		"| PostgreSQL | postgres (PostgreSQL) 15.18; defaults |",
		"| ingest 10,000,000 records, gen ids (rec/s) | 450,000 | 300,000 (COPY) | 1.50× COPY | ≥150k/s and ≥1× COPY | yes |",
		"| GetRollup c=64, default view BASIC (calls/s) | 20,000 | 40,000 (Health/Check) | 50% of Health | ≥10k/s and ≥50% | yes |",
		"not run: /dev/shm not found",
		"aggregate: ", // a line of the notes
		"## What the protection costs",
		"| operation | offence | 90% → 61% | 6–100% | 40% → 3% |",
		"## Known limits\n\n" + knownLimits,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "previous run") {
		t.Error("page keeps the previous run's text; want it replaced")
	}
	// One table: its header, the separator, a line per row.
	tableRows := 0
	for line := range strings.SplitSeq(page, "\n") {
		if strings.HasPrefix(line, "| ") && strings.Count(line, " | ") == 5 {
			tableRows++
		}
	}
	if want := len(r.Targets) + 1; tableRows != want {
		t.Errorf("page has %d lines of the results table, want %d (header and %d rows)", tableRows, want, len(r.Targets))
	}
}

func TestWriteNeedsTheWholeRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"every step with PostgreSQL", []string{"--write", "BENCHMARKS.md"}, true},
		{"some steps only", []string{"--write", "BENCHMARKS.md", "--steps", "rollup"}, false},
		{"without PostgreSQL", []string{"--write", "BENCHMARKS.md", "--skip-postgres"}, false},
		{"some steps, no page", []string{"--steps", "rollup", "--skip-postgres"}, true},
	} {
		_, err := parseOptions(tc.args, new(strings.Builder))
		if got := err == nil; got != tc.ok {
			t.Errorf("%s: parseOptions(%q) error %v, want ok %t", tc.name, tc.args, err, tc.ok)
		}
	}
}
