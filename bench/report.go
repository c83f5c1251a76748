package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
)

// Result is everything one run measured; --json prints it.
type Result struct {
	Command string `json:"command"`
	// Date is when the run began (UTC); Commit is gitCommit's answer then.
	Date       string           `json:"date"`
	Commit     string           `json:"commit"`
	Steps      []string         `json:"steps"`
	Machine    Machine          `json:"machine"`
	PostgreSQL PostgreSQLInfo   `json:"postgresql"`
	Ingest     IngestResult     `json:"ingest"`
	Aggregate  AggregateResult  `json:"aggregate"`
	Rollup     RollupResult     `json:"rollup"`
	Hung       HungResult       `json:"hung_member"`
	Throughput ThroughputResult `json:"throughput"`
	Memory     MemoryResult     `json:"coordinator_memory"`
	Targets    []Row            `json:"targets"`
	Seconds    float64          `json:"seconds"`
	// Utility is the demo's share of exact cells, a Markdown table
	// (utility.go); only a run that writes the page measures it.
	Utility string `json:"utility,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryMB  uint64 `json:"memory_mb"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	// LoadStart and LoadEnd are /proc/loadavg when the run began and ended:
	// other work on the machine shows there.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// PostgreSQLInfo says which PostgreSQL ran, or why none did.
type PostgreSQLInfo struct {
	Version  string `json:"version,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
	Settings string `json:"settings"`
}

// IngestResult is step 1.
type IngestResult struct {
	Records int       `json:"records"`
	Method  string    `json:"method"`
	Seq     IngestRun `json:"sequential_ids"`
	Random  IngestRun `json:"random_ids"`
}

// IngestRun is one key order: the node and PostgreSQL on the same CSV.
type IngestRun struct {
	NodeSeconds       float64 `json:"node_seconds"`
	NodeRecordsPerSec float64 `json:"node_records_per_sec"`
	NodeAdded         uint64  `json:"node_added"`
	NodePeakRSSMB     float64 `json:"node_peak_rss_mb"`
	// NodeAnonMB and NodeFileMB split the node's RSS after the ingest: its
	// own memory (heap, stacks), and pages of its bbolt file read through
	// the file's mapping, which the kernel can drop.
	NodeAnonMB     float64 `json:"node_anon_mb"`
	NodeFileMB     float64 `json:"node_file_mb"`
	NodeDataFileMB float64 `json:"node_data_file_mb"`
	// NodeReleaseSeconds is the part of NodeSeconds the node spent
	// protecting the release of the new data, after the commit.
	NodeReleaseSeconds float64 `json:"node_release_seconds"`
	PGSeconds          float64 `json:"pg_seconds,omitempty"`
	PGRecordsPerSec    float64 `json:"pg_records_per_sec,omitempty"`
	PGError            string  `json:"pg_error,omitempty"`
	// Ratio is node records/s over PostgreSQL COPY records/s.
	Ratio float64 `json:"ratio,omitempty"`
}

// AggregateResult is step 2.
type AggregateResult struct {
	Request string        `json:"request"`
	Method  string        `json:"method"`
	Node    stats.Summary `json:"node"`
	// NodeLogAppend is the node's own histogram of its disclosure log
	// appends over the timed calls: the fsync'd part of each call.
	NodeLogAppend stats.HistogramSummary `json:"node_log_append"`
	// NodeHandling is the node server's own histogram of its Aggregate
	// handling time (no network, no client) over the timed calls.
	NodeHandling stats.HistogramSummary `json:"node_handling"`
	// NodeClientGC is a second series of the same calls, the client's
	// collector running as it would by default (Node is timed with it
	// paused): the Go client's own share of the tail.
	NodeClientGC stats.Summary `json:"node_client_gc_running"`
	// DiskFloor is one bbolt commit of the node's log entry, on its disk.
	DiskFloor DiskFloor   `json:"disk_floor"`
	PG        []PGVariant `json:"pg_variants,omitempty"`
	PGBest    string      `json:"pg_best,omitempty"`
	PGError   string      `json:"pg_error,omitempty"`
	PGQuery   string      `json:"pg_query,omitempty"`
	// SpeedupP50 and SpeedupP99 are the best PostgreSQL variant's latency
	// over the node's.
	SpeedupP50 float64 `json:"speedup_p50,omitempty"`
	SpeedupP99 float64 `json:"speedup_p99,omitempty"`
}

// PGVariant is one way of giving PostgreSQL the GROUP BY.
type PGVariant struct {
	Name         string        `json:"name"`
	Index        string        `json:"index,omitempty"`
	Settings     string        `json:"settings,omitempty"`
	BuildSeconds float64       `json:"index_build_seconds,omitempty"`
	Plan         string        `json:"plan"`
	Latency      stats.Summary `json:"latency"`
	Error        string        `json:"error,omitempty"`
}

// RollupResult is step 3.
type RollupResult struct {
	Members         int           `json:"members"`
	MemberRecords   int           `json:"member_records"`
	Spec            string        `json:"spec"`
	Latency         stats.Summary `json:"latency"`
	MemberAggregate stats.Summary `json:"member_aggregate"`
	// RatioP99 is the rollup p99 over one member's Aggregate p99.
	RatioP99        float64 `json:"ratio_p99_to_member_p99"`
	Stored          int     `json:"stored"`
	FillSeconds     float64 `json:"fill_seconds"`
	FillPerSec      float64 `json:"fill_rollups_per_sec"`
	RollupBytes     int     `json:"rollup_bytes"`
	CoordinatorDBMB float64 `json:"coordinator_db_mb"`
	// CPU is what the timed rollups cost the machine's cores.
	CPU RollupCPU `json:"cpu_per_rollup"`
	// MemberLogAppend is the members' disclosure log appends during the
	// timed rollups, from their shared histogram.
	MemberLogAppend stats.HistogramSummary `json:"member_log_append"`
	// DiskFloor is the members' bbolt commits of their log entries, all at
	// once, on their disk.
	DiskFloor DiskFloor `json:"disk_floor"`
	// Tmpfs is the same rollup with the members' and the coordinator's files
	// on tmpfs (a diagnosis).
	Tmpfs TmpfsResult `json:"members_on_tmpfs"`
}

// RollupCPU is the CPU time (user and system) per timed rollup, in ms: of
// the bench process, which serves every member (and sends the StartRollup
// calls), and of the coordinator's process.
type RollupCPU struct {
	MembersMs     float64 `json:"members_ms"`
	CoordinatorMs float64 `json:"coordinator_ms"`
}

// String is the row's figure, with the wall-time floor on the machine's cores.
func (c RollupCPU) String() string {
	return fmt.Sprintf("%s + %s = %s (÷ %d cores = %s)", ms(c.MembersMs), ms(c.CoordinatorMs),
		ms(c.MembersMs+c.CoordinatorMs), runtime.NumCPU(), ms((c.MembersMs+c.CoordinatorMs)/float64(runtime.NumCPU())))
}

// TmpfsResult is the rollup latency with the federation's files where fsync
// is free, and the members' side of it without the coordinator.
type TmpfsResult struct {
	Latency         stats.Summary          `json:"latency"`
	CPU             RollupCPU              `json:"cpu_per_rollup"`
	MemberLogAppend stats.HistogramSummary `json:"member_log_append"`
	// FanOutHealth and FanOutAggregate are the rollup's fan-out from the
	// coordinator's process without the coordinator's work: Health/Check,
	// then the members' Aggregate.
	FanOutHealth    FanOut `json:"fan_out_health"`
	FanOutAggregate FanOut `json:"fan_out_aggregate"`
	Skipped         string `json:"skipped,omitempty"`
}

// rows are the tmpfs step's table rows over members, or one that says why
// the step did not run.
func (t TmpfsResult) rows(members int) []Row {
	measure := fmt.Sprintf("rollup %d members, files on tmpfs, p50 / p99 (ms)", members)
	if t.Skipped != "" {
		return []Row{{Step: "tmpfs", Measure: measure, Fedreport: "not run: " + t.Skipped, Peer: "-", Ratio: "-", Target: "(diagnosis: no shared-disk fsync)"}}
	}
	rows := []Row{
		{Step: "tmpfs", Measure: measure, Fedreport: ms(t.Latency.P50ms) + " / " + ms(t.Latency.P99ms), Peer: "-", Ratio: "-",
			Target: "(diagnosis: no shared-disk fsync)"},
		{Step: "tmpfs", Measure: "rollup CPU on tmpfs: members + coordinator (ms per rollup)", Fedreport: t.CPU.String(), Peer: "-", Ratio: "-",
			Target: "(diagnosis: CPU floor)"},
		{Step: "tmpfs", Measure: "rollup on tmpfs: members' disclosure log append p50 / p99 (ms)",
			Fedreport: ms(t.MemberLogAppend.P50ms) + " / " + ms(t.MemberLogAppend.P99ms), Peer: "-", Ratio: "-",
			Target: "(diagnosis: commits without a disk)"},
	}
	rows = append(rows, t.FanOutHealth.rows(members, "(diagnosis: reaching the members at all)")...)
	return append(rows, t.FanOutAggregate.rows(members, "(diagnosis: the members' answers)")...)
}

// row is f's table row: measure, what was committed, p50 / p99.
func (f DiskFloor) row(step, measure, diagnosis string) Row {
	what := fmt.Sprintf("one bbolt commit of a %s-byte log entry", count(f.EntryBytes))
	if f.Files > 1 {
		what = fmt.Sprintf("%d bbolt commits at once, one file each, %s-byte log entries", f.Files, count(f.EntryBytes))
	}
	return Row{Step: step, Measure: fmt.Sprintf("%s: %s, p50 / p99 (ms)", measure, what),
		Fedreport: ms(f.Latency.P50ms) + " / " + ms(f.Latency.P99ms), Peer: "-", Ratio: "-", Target: diagnosis}
}

// rows are f's table rows in the tmpfs step: its latency, its CPU.
func (f FanOut) rows(members int, diagnosis string) []Row {
	return []Row{
		{Step: "tmpfs", Measure: fmt.Sprintf("on tmpfs, the coordinator's process without its work: %s to %d members at once, p50 / p99 (ms)", f.Call, members),
			Fedreport: ms(f.Latency.P50ms) + " / " + ms(f.Latency.P99ms), Peer: "-", Ratio: "-", Target: diagnosis},
		{Step: "tmpfs", Measure: fmt.Sprintf("CPU of that fan-out of %s: members + coordinator's process (ms per round)", f.Call),
			Fedreport: f.CPU.String(), Peer: "-", Ratio: "-", Target: "(diagnosis: CPU floor)"},
	}
}

// HungResult is step 3 with one member that never answers.
type HungResult struct {
	TimeoutMs    float64       `json:"member_timeout_ms"`
	Latency      stats.Summary `json:"latency"`
	OverDeadline stats.Summary `json:"over_deadline"`
	States       string        `json:"states"`
	// FirstOverDeadline is OverDeadline with the hung member first in the
	// registry instead of last (a diagnosis).
	FirstOverDeadline stats.Summary `json:"over_deadline_hung_first"`
}

// ThroughputResult is step 4.
type ThroughputResult struct {
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds_per_round"`
	Rounds      int     `json:"rounds"`
	// GetRollup is GetRollup as a client calls it by default: the BASIC
	// view, the rollup without its member results.
	GetRollup float64 `json:"get_rollup_per_sec"`
	// GetRollupFull is GetRollup in the FULL view, every member's result.
	GetRollupFull float64 `json:"get_rollup_full_per_sec"`
	// GetRollupNoDecode is GetRollup in the FULL view with a client that
	// does not decode the responses (a diagnosis: the server's share).
	GetRollupNoDecode float64 `json:"get_rollup_full_no_client_decode_per_sec"`
	// BasicBytes and FullBytes are the sizes of the two answers.
	BasicBytes  int     `json:"basic_bytes"`
	FullBytes   int     `json:"full_bytes"`
	Health      float64 `json:"health_check_per_sec"`
	Ratio       float64 `json:"ratio"`
	GetRollupMs float64 `json:"get_rollup_p50_ms_single"`
	// DecodeUs and EncodeUs are the cost of proto.Unmarshal and proto.Marshal
	// of one GetRollupResponse in the FULL view in the bench process.
	DecodeUs float64 `json:"decode_us"`
	EncodeUs float64 `json:"encode_us"`
}

// MemoryResult is step 5: the coordinator's child process.
type MemoryResult struct {
	Process       string   `json:"process"`
	AfterFill     childMem `json:"after_fill"`
	AfterReads    childMem `json:"after_reads"`
	PeakRSSMB     float64  `json:"peak_rss_mb"`
	RSSMB         float64  `json:"rss_mb"`
	HeapAllocMB   float64  `json:"heap_alloc_mb"`
	StoredRollups int      `json:"stored_rollups"`
}

// Row is one line of the table: a measure against its peer and target.
type Row struct {
	Step      string `json:"step"`
	Measure   string `json:"measure"`
	Fedreport string `json:"fedreport"`
	Peer      string `json:"peer"`
	Ratio     string `json:"ratio"`
	Target    string `json:"target"`
	// Met is yes, no, "?" (a part could not be measured) or empty (no target).
	Met string `json:"met"`
}

// rows builds the table from the measurements.
func (r *Result) rows() []Row {
	var rows []Row
	pgNA := "n/a"
	if r.PostgreSQL.Skipped != "" {
		pgNA = "n/a: " + r.PostgreSQL.Skipped
	}

	ingest := func(step, name string, run IngestRun, withTarget bool) {
		row := Row{Step: step, Measure: name, Fedreport: rate(run.NodeRecordsPerSec), Peer: pgNA, Ratio: "-"}
		if run.PGRecordsPerSec > 0 {
			row.Peer = rate(run.PGRecordsPerSec) + " (COPY)"
			row.Ratio = fmt.Sprintf("%.2f× COPY", run.Ratio)
		} else if run.PGError != "" {
			row.Peer = "n/a: " + run.PGError
		}
		if withTarget {
			row.Target = "≥150k/s and ≥1× COPY"
			row.Met = all(run.NodeRecordsPerSec >= 150_000, run.Ratio >= 1, run.PGRecordsPerSec > 0)
		} else {
			row.Target = "(key order cost)"
		}
		rows = append(rows, row)
	}
	ingest("ingest", fmt.Sprintf("ingest %s records, gen ids (rec/s)", count(r.Ingest.Records)), r.Ingest.Seq, true)
	ingest("random", fmt.Sprintf("ingest %s records, random ids (rec/s)", count(r.Ingest.Records)), r.Ingest.Random, false)
	release := fmt.Sprintf("%.2f", r.Ingest.Seq.NodeReleaseSeconds)
	if r.ran("random") {
		release += fmt.Sprintf(" / %.2f", r.Ingest.Random.NodeReleaseSeconds)
	}
	rows = append(rows, Row{Step: "ingest", Measure: fmt.Sprintf("release computed after the %s-record ingest, gen ids / random ids (s, inside the ingests above)", count(r.Ingest.Records)),
		Fedreport: release, Peer: "-", Ratio: "-", Target: "(reported)"})

	agg := r.Aggregate
	var best *PGVariant
	for i := range agg.PG {
		if agg.PG[i].Name == agg.PGBest {
			best = &agg.PG[i]
		}
	}
	for _, p := range []struct {
		name   string
		node   float64
		pg     func(stats.Summary) float64
		target bool
	}{
		{"Aggregate month×offence p50 (ms)", agg.Node.P50ms, func(s stats.Summary) float64 { return s.P50ms }, false},
		{"Aggregate month×offence p99 (ms)", agg.Node.P99ms, func(s stats.Summary) float64 { return s.P99ms }, true},
	} {
		row := Row{Step: "aggregate", Measure: p.name, Fedreport: ms(p.node), Peer: pgNA, Ratio: "-"}
		speed := 0.0
		if best != nil {
			speed = p.pg(best.Latency) / p.node
			row.Peer = ms(p.pg(best.Latency)) + " (GROUP BY)"
			row.Ratio = fmt.Sprintf("%.0f× faster", speed)
		} else if agg.PGError != "" {
			row.Peer = "n/a: " + agg.PGError
		}
		if p.target {
			row.Target = "≤2 ms and ≥100× faster"
			row.Met = all(p.node <= 2, speed >= 100, best != nil)
		}
		rows = append(rows, row)
	}
	la, nh := agg.NodeLogAppend, agg.NodeHandling
	rows = append(rows,
		agg.DiskFloor.row("aggregate", "Aggregate: this disk's floor", "(diagnosis: the least an answer takes here)"),
		Row{Step: "aggregate", Measure: "Aggregate, the client's collector running, p50 / p99 (ms)", Fedreport: ms(agg.NodeClientGC.P50ms) + " / " + ms(agg.NodeClientGC.P99ms),
			Peer: "-", Ratio: "-", Target: "(diagnosis: a Go client's own pauses)"},
		Row{Step: "aggregate", Measure: "Aggregate: node's own handling p50 / p99 (ms)", Fedreport: ms(nh.P50ms) + " / " + ms(nh.P99ms),
			Peer: "-", Ratio: "-", Target: "(diagnosis: server side, no network)"},
		Row{Step: "aggregate", Measure: "Aggregate: node's disclosure log append p50 / p99 (ms)", Fedreport: ms(la.P50ms) + " / " + ms(la.P99ms),
			Peer: "-", Ratio: "-", Target: "(diagnosis: the fsync'd commit alone)"},
		Row{Step: "aggregate", Measure: "Aggregate: calls whose log append alone took over 2 ms", Fedreport: fmt.Sprintf("%.1f%%", 100*la.Over2ms),
			Peer: "-", Ratio: "-", Target: "(over 1%: p99 ≤ 2 ms out of reach)"},
	)

	ru := r.Rollup
	floorPeer := func(floor, rollup float64) (peer, ratio string) {
		if floor <= 0 {
			return "-", "-"
		}
		return ms(floor) + " (disk floor)", fmt.Sprintf("%.1f× floor", rollup/floor)
	}
	p50Peer, p50Ratio := floorPeer(ru.DiskFloor.Latency.P50ms, ru.Latency.P50ms)
	p99Peer, p99Ratio := floorPeer(ru.DiskFloor.Latency.P99ms, ru.Latency.P99ms)
	rows = append(rows,
		Row{Step: "rollup", Measure: fmt.Sprintf("rollup %d members p50 (ms)", ru.Members), Fedreport: ms(ru.Latency.P50ms), Peer: p50Peer, Ratio: p50Ratio,
			Target: "≤25 ms", Met: yes(ru.Latency.P50ms <= 25)},
		Row{Step: "rollup", Measure: fmt.Sprintf("rollup %d members p99 (ms)", ru.Members), Fedreport: ms(ru.Latency.P99ms), Peer: p99Peer, Ratio: p99Ratio,
			Target: "≤50 ms", Met: yes(ru.Latency.P99ms <= 50)},
		Row{Step: "rollup", Measure: "one member's Aggregate as the coordinator asks it, p50 / p99 (ms)",
			Fedreport: ms(ru.MemberAggregate.P50ms) + " / " + ms(ru.MemberAggregate.P99ms), Peer: "-", Ratio: fmt.Sprintf("rollup p99 = %.1f× member p99", ru.RatioP99),
			Target: "(diagnosis: one member's share)"},
		Row{Step: "rollup", Measure: "rollup CPU: members + coordinator (ms per rollup)", Fedreport: ru.CPU.String(), Peer: "-", Ratio: "-",
			Target: "(diagnosis: CPU floor)"},
		Row{Step: "rollup", Measure: "rollup: members' disclosure log append p50 / p99 (ms)",
			Fedreport: ms(ru.MemberLogAppend.P50ms) + " / " + ms(ru.MemberLogAppend.P99ms), Peer: "-", Ratio: "-",
			Target: "(diagnosis: commits on one disk)"},
		ru.DiskFloor.row("rollup", "rollup: this disk's floor", "(diagnosis: the least a rollup takes here)"),
	)
	rows = append(rows, ru.Tmpfs.rows(ru.Members)...)
	rows = append(rows,
		Row{Step: "hung", Measure: "rollup, 1 hung member (last): over deadline p99 (ms)", Fedreport: ms(r.Hung.OverDeadline.P99ms),
			Peer: fmt.Sprintf("deadline %s ms", ms(r.Hung.TimeoutMs)), Ratio: "-",
			Target: "≤20 ms", Met: yes(r.Hung.OverDeadline.P99ms <= 20)},
		Row{Step: "hung", Measure: "rollup, 1 hung member (first): over deadline p99 (ms)", Fedreport: ms(r.Hung.FirstOverDeadline.P99ms),
			Peer: fmt.Sprintf("deadline %s ms", ms(r.Hung.TimeoutMs)), Ratio: "-",
			Target: "(diagnosis: queueing)"},
	)
	t := r.Throughput
	rows = append(rows, Row{
		Step:    "rollup",
		Measure: fmt.Sprintf("GetRollup c=%d, default view BASIC (calls/s)", t.Concurrency), Fedreport: rate(t.GetRollup),
		Peer: rate(t.Health) + " (Health/Check)", Ratio: fmt.Sprintf("%.0f%% of Health", 100*t.Ratio),
		Target: "≥10k/s and ≥50%", Met: yes(t.GetRollup >= 10_000 && t.Ratio >= 0.5),
	})
	rows = append(rows, Row{
		Step:    "rollup",
		Measure: fmt.Sprintf("GetRollup c=%d, view FULL (calls/s)", t.Concurrency), Fedreport: rate(t.GetRollupFull),
		Peer: rate(t.Health) + " (Health/Check)", Ratio: fmt.Sprintf("%.0f%% of Health", 100*t.GetRollupFull/t.Health),
		Target: "(every member's result)",
	})
	rows = append(rows, Row{
		Step:    "rollup",
		Measure: fmt.Sprintf("GetRollup c=%d, view FULL, client not decoding (calls/s)", t.Concurrency), Fedreport: rate(t.GetRollupNoDecode),
		Peer: rate(t.Health) + " (Health/Check)", Ratio: fmt.Sprintf("%.0f%% of Health", 100*t.GetRollupNoDecode/t.Health),
		Target: "(diagnosis: server's share)",
	})
	m := r.Memory
	nodePeak := max(r.Ingest.Seq.NodePeakRSSMB, r.Ingest.Random.NodePeakRSSMB)
	nodeMet := "" // the target is stated at 10M records
	if r.Ingest.Records == maxRecords {
		nodeMet = yes(nodePeak < 300)
	}
	rows = append(rows,
		Row{Step: "rollup", Measure: fmt.Sprintf("coordinator peak RSS, %d members, %s rollups (MB)", ru.Members, count(m.StoredRollups)),
			Fedreport: fmt.Sprintf("%.0f", m.PeakRSSMB), Peer: "-", Ratio: "-",
			Target: "<200 MB", Met: yes(m.PeakRSSMB < 200)},
		Row{Step: "rollup", Measure: "coordinator RSS after the reads: anonymous / file pages of its mapped rollup file (MB)",
			Fedreport: fmt.Sprintf("%.0f / %.0f", stats.MB(m.AfterReads.Proc.RssAnon), stats.MB(m.AfterReads.Proc.RssFile)), Peer: "-", Ratio: "-",
			Target: "(diagnosis: file pages are the kernel's to drop)"},
		Row{Step: "ingest", Measure: "node peak RSS during ingest (MB)",
			Fedreport: fmt.Sprintf("%.0f", nodePeak), Peer: "-", Ratio: "-",
			Target: "<300 MB at 10M records", Met: nodeMet},
		Row{Step: "ingest", Measure: "node RSS after the ingest: anonymous / file pages of its mapped data file (MB)",
			Fedreport: fmt.Sprintf("%.0f / %.0f", r.Ingest.Seq.NodeAnonMB, r.Ingest.Seq.NodeFileMB), Peer: "-", Ratio: "-",
			Target: "(diagnosis: file pages are the kernel's to drop)"},
	)
	return slices.DeleteFunc(rows, func(row Row) bool {
		return len(r.Steps) > 0 && !slices.Contains(r.Steps, row.Step) && !(row.Step == "ingest" && slices.Contains(r.Steps, "random"))
	})
}

// printTable writes the rows and the notes that make them reproducible.
func (r *Result) printTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tfedreport\tpeer\tratio\ttarget\tmet?")
	for _, row := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", row.Measure, row.Fedreport, row.Peer, row.Ratio, row.Target, row.Met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), %d MB, %s, %s; load average %s at the start, %s at the end\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMB, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.LoadStart, r.Machine.LoadEnd)
	if r.PostgreSQL.Version != "" {
		fmt.Fprintf(w, "postgresql: %s; %s\n", r.PostgreSQL.Version, r.PostgreSQL.Settings)
	} else {
		fmt.Fprintf(w, "postgresql: not run: %s\n", r.PostgreSQL.Skipped)
	}
	if err := r.printNotes(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "command: %s (%.0f s)\n", r.Command, r.Seconds)
	return err
}

// printNotes writes what the table's rows leave out: how each step ran,
// every PostgreSQL variant, and the figures behind the ratios.
func (r *Result) printNotes(w io.Writer) error {
	if r.ran("ingest") || r.ran("random") {
		fmt.Fprintf(w, "ingest: %s\n", r.Ingest.Method)
	}
	if r.ran("aggregate") {
		fmt.Fprintf(w, "aggregate: %s; %s\n", r.Aggregate.Request, r.Aggregate.Method)
	}
	for _, v := range r.Aggregate.PG {
		mark := " "
		if v.Name == r.Aggregate.PGBest {
			mark = "*"
		}
		if v.Error != "" {
			fmt.Fprintf(w, "  %s pg %-42s error: %s\n", mark, v.Name, v.Error)
			continue
		}
		build := "no index to build"
		if v.Index != "" {
			build = fmt.Sprintf("index built in %.1f s", v.BuildSeconds)
		}
		fmt.Fprintf(w, "  %s pg %-40s p50 %7s ms  p99 %7s ms  (%d runs; %s; plan: %s)\n",
			mark, v.Name, ms(v.Latency.P50ms), ms(v.Latency.P99ms), v.Latency.Count, build, v.Plan)
	}
	if r.ran("rollup") {
		fmt.Fprintf(w, "rollup: %s; %d timed one after the other; member Aggregate p50 %s ms p99 %s ms; %d stored in %.0f s (%.1f/s), %d bytes each, coordinator file %.0f MB\n",
			r.Rollup.Spec, r.Rollup.Latency.Count, ms(r.Rollup.MemberAggregate.P50ms), ms(r.Rollup.MemberAggregate.P99ms),
			r.Rollup.Stored, r.Rollup.FillSeconds, r.Rollup.FillPerSec, r.Rollup.RollupBytes, r.Rollup.CoordinatorDBMB)
	}
	if r.ran("hung") {
		fmt.Fprintf(w, "hung member: member timeout %s ms; last in the registry: rollup latency p50 %s ms p99 %s ms, over deadline p50 %s ms p99 %s ms max %s ms (%s); first in the registry: over deadline p50 %s ms p99 %s ms\n",
			ms(r.Hung.TimeoutMs), ms(r.Hung.Latency.P50ms), ms(r.Hung.Latency.P99ms),
			ms(r.Hung.OverDeadline.P50ms), ms(r.Hung.OverDeadline.P99ms), ms(r.Hung.OverDeadline.MaxMs), r.Hung.States,
			ms(r.Hung.FirstOverDeadline.P50ms), ms(r.Hung.FirstOverDeadline.P99ms))
	}
	if !r.ran("rollup") {
		return nil
	}
	fmt.Fprintf(w, "throughput: one mTLS connection, %d callers, best of %d rounds of %.0f s per RPC, alternating; answers of %s bytes (BASIC) and %s bytes (FULL); single GetRollup (BASIC) p50 %s ms; decoding one FULL GetRollupResponse costs %.0f µs, encoding %.0f µs\n",
		r.Throughput.Concurrency, r.Throughput.Rounds, r.Throughput.Seconds, count(r.Throughput.BasicBytes), count(r.Throughput.FullBytes),
		ms(r.Throughput.GetRollupMs), r.Throughput.DecodeUs, r.Throughput.EncodeUs)
	m := r.Memory
	fmt.Fprintf(w, "coordinator memory (%s): after storing: RSS %.0f MB (anon %.0f, file %.0f), heap %.0f MB, %d goroutines; after reads: RSS %.0f MB, peak %.0f MB\n",
		m.Process, stats.MB(m.AfterFill.Proc.VmRSS), stats.MB(m.AfterFill.Proc.RssAnon), stats.MB(m.AfterFill.Proc.RssFile),
		stats.MB(m.AfterFill.HeapAlloc), m.AfterFill.Goroutines, stats.MB(m.AfterReads.Proc.VmRSS), m.PeakRSSMB)
	return nil
}

// ran reports whether step ran (every step when Steps is empty).
func (r *Result) ran(step string) bool {
	return len(r.Steps) == 0 || slices.Contains(r.Steps, step)
}

func (r *Result) printJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// yes renders a met target.
func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// all is yes when every part is met; "?" when the last part (that the peer
// was measured) is false and nothing measured failed.
func all(abs, rel, measured bool) string {
	switch {
	case !abs:
		return "no"
	case !measured:
		return "?"
	case !rel:
		return "no"
	}
	return "yes"
}

// rate renders a per-second figure with thousands separators.
func rate(v float64) string {
	if v <= 0 {
		return "-"
	}
	return count(int(v + 0.5))
}

func count(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ms renders milliseconds with three significant digits or so.
func ms(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// machine describes this machine from /proc and the runtime.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				m.MemoryMB = kb >> 10
			}
		}
	}
	m.LoadStart = loadavg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
