package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"text/template"
)

// The benchmark page (--write BENCHMARKS.md) holds one whole run: the
// machine, the commit, the command, one table of every figure against its
// peer and target, the run's notes and the known limits. It is replaced on
// each run; earlier runs are in git. A run of some steps only does not write
// it (options.check), so the page never mixes figures of different runs.

// knownLimits is the page's last section: what no run on this machine can
// change, whatever its figures.
const knownLimits = `- **One machine, two cores.** The client, the node or PostgreSQL, and in the rollup steps
  the 200 members and the coordinator all run on this machine's cores, shared with whatever
  else runs on it. The load average above says how busy it was; tails (p99) move with it.
  Run when the machine is quiet.
- **One shared disk.** Every answer carries a durable commit of the node's disclosure log
  (docs/privacy.md), so an Aggregate's tail follows this disk's fsync. A rollup over 200
  members waits for 200 such commits on the one disk they share here; on 200 machines each
  member would commit on its own. The floor rows measure the disk alone in the same run,
  and the tmpfs rows show the same rollup where fsync is free.
- **The rollup target is below this disk's floor.** 200 commits at once on this disk take
  about as long as the p50 target (25 ms) before any member reads a cell: the target
  cannot be met here, only compared with the floor.
- **RSS counts file pages.** Pages of bbolt's memory-mapped file that a process read count in
  its VmRSS until the kernel drops them; the anonymous figure is the process's own memory.
- **Percentiles.** p99 is the nearest rank: over 1,000 calls the 11th-slowest. The Aggregate
  target is stated at 10M records; the node's time does not grow with N, PostgreSQL's does.
`

// pageData is what the page template reads.
type pageData struct {
	*Result
	Notes  string
	Limits string
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{"cell": cell, "count": func(n uint64) string { return count(int(n)) }}).Parse(
	`# Benchmarks

<!-- Written by the bench (bench/page.go); edits are lost on the next run. -->

One run of ` + "`bench/`" + `: fedreport against what a ministry would otherwise use, PostgreSQL 15,
on one machine. The bench writes this page and replaces it on each run; earlier runs are in
git (` + "`git log -p BENCHMARKS.md`" + `). How each figure is measured, and how to run the bench:
[docs/benchmarks.md](docs/benchmarks.md).

## Run

| | |
|---|---|
| date | {{.Date}}, {{printf "%.0f" .Seconds}} s |
| commit | {{.Commit}} |
| command | ` + "`{{.Command}}`" + ` |
| CPU | {{.Machine.CPUs}} × {{.Machine.CPUModel}} |
| memory | {{count .Machine.MemoryMB}} MB |
| kernel | {{.Machine.Kernel}} |
| Go | {{.Machine.GoVersion}} |
| PostgreSQL | {{if .PostgreSQL.Version}}{{.PostgreSQL.Version}}; {{.PostgreSQL.Settings}}{{else}}not run: {{.PostgreSQL.Skipped}}{{end}} |
| load average (1, 5, 15 min) | {{.Machine.LoadStart}} at the start, {{.Machine.LoadEnd}} at the end |

## Results

| measure | fedreport | peer, same run | ratio | target | met |
|---|---|---|---|---|---|
{{range .Targets}}| {{cell .Measure}} | {{cell .Fedreport}} | {{cell .Peer}} | {{cell .Ratio}} | {{cell .Target}} | {{cell .Met}} |
{{end}}
## What the protection costs

The protected release (docs/privacy.md) withholds more than k alone would. On the demo's
data, the share of cells with data that are published exactly, before (k on each answer
alone, no protection against combining answers) → after, measured in this run by
` + "`go test ./cmd/fedreport -run TestDemoReleaseUtility`" + `:

{{.Utility}}
The run's notes, as the bench printed them:

` + "```" + `
{{.Notes}}` + "```" + `

## Known limits

{{.Limits}}`))

// writePage writes r's page to path, replacing it.
func (r *Result) writePage(path string) error {
	var notes bytes.Buffer
	if err := r.printNotes(&notes); err != nil {
		return err
	}
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, pageData{Result: r, Notes: notes.String(), Limits: knownLimits}); err != nil {
		return err
	}
	return os.WriteFile(path, page.Bytes(), 0o644)
}

// cell is s made safe for a Markdown table cell.
func cell(s string) string {
	if s == "" {
		return " "
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// gitCommit names the commit the bench was built from, as git sees the
// working tree: the hash, and whether tracked files have changes.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return fmt.Sprintf("unknown (git rev-parse: %v)", err)
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	switch {
	case err != nil:
		return commit + " (git status: " + err.Error() + ")"
	case len(bytes.TrimSpace(status)) > 0:
		return commit + " with uncommitted changes (dirty)"
	}
	return commit + " (clean)"
}
