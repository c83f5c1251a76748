package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/bench/internal/pg"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// maxRecords is the largest --records the issue asks for.
const maxRecords = 10_000_000

// options are the benchmark's flags.
type options struct {
	records        int
	aggregateCalls int
	members        int
	rollups        int
	skipPostgres   bool
	json           bool
	jsonFile       string
	write          string
	cpuprofile     string

	memberRecords int
	rollupSamples int
	rollupBy      string
	groupBy       []fedreportv1.Dimension // parsed rollupBy
	hungRollups   int
	hungTimeout   time.Duration
	qpsDuration   time.Duration
	qpsRounds     int
	concurrency   int
	pgBin         string
	pgSeconds     time.Duration
	dir           string
	seed          int64
	verbose       bool
	steps         []string
	stepSet       map[string]bool
}

// allSteps are the benchmark's steps in the order they run; --steps picks some.
var allSteps = []string{"ingest", "random", "aggregate", "rollup", "hung", "tmpfs"}

// has reports whether step runs.
func (o *options) has(step string) bool { return o.stepSet[step] }

func (o *options) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.records, "records", 1_000_000, "records to ingest into the node and PostgreSQL (up to 10M)")
	fs.IntVar(&o.aggregateCalls, "aggregate-calls", 1000, "measured Aggregate calls for p50/p99 (also the member Aggregate of the rollup step; PostgreSQL gets at most this many, see --pg-seconds)")
	fs.IntVar(&o.members, "members", 200, "member nodes of the rollup steps (real servers on loopback)")
	fs.IntVar(&o.rollups, "rollups", 10_000, "rollups the coordinator stores before its memory and GetRollup are measured")
	fs.BoolVar(&o.skipPostgres, "skip-postgres", false, "leave PostgreSQL out (its column says so)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&o.jsonFile, "json-file", "", "also write the results as JSON to this file")
	fs.StringVar(&o.write, "write", "", "write the benchmark page (BENCHMARKS.md) to this file, replacing it; needs every step and PostgreSQL")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write CPU profiles PREFIX.<step>.<process>.pprof for each step and process (bench, node, coordinator)")

	fs.IntVar(&o.memberRecords, "member-records", 1000, "records in each member node of the rollup steps")
	fs.IntVar(&o.rollupSamples, "rollup-samples", 200, "rollups timed one after the other for p50/p99")
	fs.StringVar(&o.rollupBy, "rollup-by", "", "group_by of the benchmark's rollups (e.g. month); empty: totals per metric")
	fs.IntVar(&o.hungRollups, "hung-rollups", 50, "rollups timed with one hung member")
	fs.DurationVar(&o.hungTimeout, "hung-timeout", 200*time.Millisecond, "coordinator member timeout of the hung-member step")
	fs.DurationVar(&o.qpsDuration, "qps-duration", 5*time.Second, "length of one throughput round of GetRollup and of Health/Check")
	fs.IntVar(&o.qpsRounds, "qps-rounds", 2, "alternating throughput rounds per RPC; the best round counts")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent callers of the throughput step")
	fs.StringVar(&o.pgBin, "pg-bin", pg.DefaultBinDir, "directory of PostgreSQL's initdb, pg_ctl, postgres, psql and pgbench")
	fs.DurationVar(&o.pgSeconds, "pg-seconds", 20*time.Second, "time budget of each PostgreSQL GROUP BY variant (at least 20 runs each)")
	fs.StringVar(&o.dir, "dir", "", "keep the benchmark's files (CSVs, data files, certificates) in DIR (default: a temporary directory, removed)")
	fs.Int64Var(&o.seed, "seed", 2020, "seed of the synthetic records")
	fs.BoolVar(&o.verbose, "verbose", false, "log the nodes' and coordinator's lifecycle to stderr")
	fs.StringSliceVar(&o.steps, "steps", allSteps, "steps to run: ingest (gen ids, step 1), random (random ids, 1b), aggregate (step 2, on the node of ingest, which it implies), rollup (steps 3-5: rollups, GetRollup throughput, coordinator memory), hung (3b), tmpfs (3c)")
}

func (o *options) check() error {
	switch {
	case o.records < 1 || o.records > maxRecords:
		return fmt.Errorf("--records %d: want 1 to %d", o.records, maxRecords)
	case o.aggregateCalls < 1:
		return fmt.Errorf("--aggregate-calls %d: want at least 1", o.aggregateCalls)
	case o.members < 2 || o.members > 999:
		return fmt.Errorf("--members %d: want 2 to 999 (one is replaced by the hung member)", o.members)
	case o.rollupSamples < 1:
		return fmt.Errorf("--rollup-samples %d: want at least 1", o.rollupSamples)
	case o.rollups < o.rollupSamples+1:
		return fmt.Errorf("--rollups %d: want more than --rollup-samples (%d)", o.rollups, o.rollupSamples)
	case o.memberRecords < 0:
		return fmt.Errorf("--member-records %d: want 0 or more", o.memberRecords)
	case o.hungRollups < 1:
		return fmt.Errorf("--hung-rollups %d: want at least 1", o.hungRollups)
	case o.hungTimeout <= 0:
		return fmt.Errorf("--hung-timeout %s: want a positive duration", o.hungTimeout)
	case o.qpsDuration <= 0 || o.qpsRounds < 1 || o.concurrency < 1:
		return errors.New("--qps-duration, --qps-rounds and --concurrency must be positive")
	case o.pgSeconds <= 0:
		return fmt.Errorf("--pg-seconds %s: want a positive duration", o.pgSeconds)
	}
	o.stepSet = make(map[string]bool)
	for _, st := range o.steps {
		if !slices.Contains(allSteps, st) {
			return fmt.Errorf("--steps: unknown step %q (want some of %s)", st, strings.Join(allSteps, ","))
		}
		o.stepSet[st] = true
	}
	// The page holds one whole run; figures of some steps beside an older
	// run's would not be one machine's state.
	if o.write != "" && (len(o.stepSet) < len(allSteps) || o.skipPostgres) {
		return fmt.Errorf("--write %s: the page holds every step and PostgreSQL; drop --steps and --skip-postgres", o.write)
	}
	if o.stepSet["aggregate"] {
		o.stepSet["ingest"] = true
	}
	var err error
	if o.groupBy, err = records.ParseDimensions(o.rollupBy); err != nil {
		return fmt.Errorf("--rollup-by: %w", err)
	}
	return nil
}

// parseOptions parses args; it returns nil options after --help.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]\n\nMeasures fedreport against PostgreSQL 15 (issue 6). Flags:")
		fs.PrintDefaults()
	}
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return &o, nil
}
