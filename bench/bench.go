package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/bench/internal/pg"
	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Unmeasured calls before each latency series: connections, TLS sessions
// and caches settle first.
const (
	aggregateWarmup = 20
	rollupWarmup    = 3
)

// benchCoordinator is the identity the bench asks nodes as, as a
// coordinator would.
var benchCoordinator = identity.Coordinator(trustDomain, "bench")

// fillConcurrency is how many rollups run at once while the coordinator's
// history is filled up to --rollups.
const fillConcurrency = 4

// pgMinRuns is the fewest timed runs of each PostgreSQL variant.
const pgMinRuns = 20

// bench is one run: its options, files and results.
type bench struct {
	o      options
	dir    string
	pki    *benchPKI
	stderr io.Writer
	res    Result
	// rollupIDs are the rollups the coordinator stored (step 3), which
	// GetRollup reads (step 4).
	rollupIDs []string
}

func runBench(ctx context.Context, o options, args []string, stdout, stderr io.Writer) (err error) {
	start := time.Now()
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fedreport-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b := &bench{o: o, dir: dir, stderr: stderr}
	b.res.Command = strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
	b.res.Machine = machine()
	b.res.Date = start.UTC().Format("2006-01-02 15:04 UTC")
	b.res.Commit = gitCommit()
	if b.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return fmt.Errorf("pki: %w (use an empty --dir)", err)
	}
	if err := b.run(ctx); err != nil {
		return err
	}
	b.res.Seconds = time.Since(start).Seconds()
	b.res.Machine.LoadEnd = loadavg()
	b.res.Targets = b.res.rows()
	if o.jsonFile != "" {
		f, err := os.Create(o.jsonFile)
		if err != nil {
			return err
		}
		if err := errors.Join(b.res.printJSON(f), f.Close()); err != nil {
			return fmt.Errorf("--json-file: %w", err)
		}
	}
	if o.write != "" {
		if b.res.Utility, err = measureUtility(ctx, dir); err != nil {
			return fmt.Errorf("utility: %w", err)
		}
		if err := b.res.writePage(o.write); err != nil {
			return fmt.Errorf("--write: %w", err)
		}
		b.logf("wrote %s", o.write)
	}
	if o.json {
		return b.res.printJSON(stdout)
	}
	return b.res.printTable(stdout)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

func (b *bench) run(ctx context.Context) (err error) {
	o := b.o
	seqCSV, randCSV := filepath.Join(b.dir, "records-gen-ids.csv"), filepath.Join(b.dir, "records-random-ids.csv")
	if o.has("ingest") {
		b.logf("writing %s records with ids as `fedreport gen` makes them", count(o.records))
		if err := writeCSV(seqCSV, o.records, o.seed, false); err != nil {
			return err
		}
	}
	if o.has("random") {
		b.logf("writing the same %s records with their ids in random order", count(o.records))
		if err := writeCSV(randCSV, o.records, o.seed, true); err != nil {
			return err
		}
	}
	b.res.Steps = slices.DeleteFunc(slices.Clone(allSteps), func(st string) bool { return !o.has(st) })
	if !o.has("ingest") && !o.has("random") {
		b.res.PostgreSQL.Skipped = "no step of --steps " + strings.Join(b.res.Steps, ",") + " uses it"
		return b.federation(ctx)
	}

	var srv *pg.Server
	b.res.PostgreSQL.Settings = "defaults (fsync=on, synchronous_commit=on, full_page_writes=on, shared_buffers=128MB, max_parallel_workers_per_gather=2) but locale C; COPY over the unix socket, queries over loopback TCP"
	if o.skipPostgres {
		b.res.PostgreSQL.Skipped = "--skip-postgres"
	} else {
		b.logf("starting PostgreSQL from %s", o.pgBin)
		if srv, err = pg.Start(ctx, o.pgBin); err != nil {
			b.res.PostgreSQL.Skipped = firstLine(err.Error())
			b.logf("PostgreSQL not available, its column says why: %v", err)
			srv, err = nil, nil
		} else {
			b.res.PostgreSQL.Version = srv.Version
			defer func() {
				if serr := srv.Stop(); serr != nil {
					err = errors.Join(err, serr)
				}
			}()
		}
	}

	// 1. Ingest, alternating node and PostgreSQL to spread the noise.
	b.res.Ingest.Records = o.records
	b.res.Ingest.Method = "node in its own process; the bench parses the CSV and streams it to the node's admin unix socket as `fedreport ingest` does (2000 records per message, one atomic stream); " +
		"PostgreSQL: `COPY records FROM STDIN (FORMAT csv)` piped through psql into a fresh table with PRIMARY KEY (record_id), psql's wall time"
	var seqNode *child
	if o.has("ingest") {
		b.quiesce(ctx, srv)
		if seqNode, err = b.ingestNode(ctx, "node-gen-ids", seqCSV, &b.res.Ingest.Seq); err != nil {
			return err
		}
		defer func() {
			if serr := seqNode.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
		b.quiesce(ctx, srv)
		b.ingestPG(ctx, srv, "records", seqCSV, &b.res.Ingest.Seq)
	}
	if o.has("random") {
		b.quiesce(ctx, srv)
		randNode, err := b.ingestNode(ctx, "node-random-ids", randCSV, &b.res.Ingest.Random)
		if err != nil {
			return err
		}
		if err := randNode.stop(); err != nil {
			return err
		}
		b.quiesce(ctx, srv)
		b.ingestPG(ctx, srv, "records_random", randCSV, &b.res.Ingest.Random)
		if srv != nil {
			if _, err := srv.Exec(ctx, "DROP TABLE IF EXISTS records_random"); err != nil {
				b.logf("%v", err)
			}
		}
	}

	// 2. Aggregate against the node that holds the gen-id records.
	if o.has("aggregate") {
		if err := b.aggregate(ctx, seqNode, srv); err != nil {
			return err
		}
	}
	if seqNode != nil {
		if err := seqNode.stop(); err != nil {
			return err
		}
	}
	if srv != nil {
		if err := srv.Stop(); err != nil {
			return err
		}
	}

	// 3-5. Rollups, throughput and the coordinator's memory.
	return b.federation(ctx)
}

// quiesce makes the machine's pending writes durable before a timed step,
// so that the step does not pay for an earlier one's: PostgreSQL's
// checkpoint after a large COPY or CREATE INDEX (spread over minutes by
// default) and the kernel's writeback of the generated CSV files, which
// would otherwise compete with the step's own fsyncs. Both sides of a
// comparison are timed after it.
func (b *bench) quiesce(ctx context.Context, srv *pg.Server) {
	start := time.Now()
	if srv != nil {
		if _, err := srv.Exec(ctx, "CHECKPOINT"); err != nil {
			b.logf("CHECKPOINT: %s", firstLine(err.Error()))
		}
	}
	syscall.Sync()
	b.logf("flushed pending writes (CHECKPOINT, sync) in %s", time.Since(start).Round(time.Millisecond))
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// profile starts a CPU profile of this process and of children for step,
// when --cpuprofile is set, and returns the function that stops them.
// Profiling is an aid: a failure is reported, not fatal.
func (b *bench) profile(ctx context.Context, step string, children ...*child) (stop func()) {
	if b.o.cpuprofile == "" {
		return func() {}
	}
	path := func(proc string) string { return fmt.Sprintf("%s.%s.%s.pprof", b.o.cpuprofile, step, proc) }
	f, err := os.Create(path("bench"))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			f = nil
		}
	}
	if err != nil {
		b.logf("cpu profile of %s: %v", step, err)
	}
	var started []*child
	for _, c := range children {
		if _, err := c.call(ctx, childRequest{Cmd: "profile", Path: path(c.name)}); err != nil {
			b.logf("cpu profile of %s: %v", step, err)
			continue
		}
		started = append(started, c)
	}
	return func() {
		if f != nil {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				b.logf("cpu profile of %s: %v", step, err)
			}
		}
		for _, c := range started {
			if _, err := c.call(ctx, childRequest{Cmd: "profile-stop"}); err != nil {
				b.logf("cpu profile of %s: %v", step, err)
			}
		}
	}
}

// nodeFiles issues (once) the certificate of the ingest node.
func (b *bench) nodeFiles() (cert, key string, err error) {
	id := identity.Node(trustDomain, benchMember)
	cert = filepath.Join(b.pki.dir, "node-"+benchMember+".crt")
	key = filepath.Join(b.pki.dir, "node-"+benchMember+".key")
	if _, err := os.Stat(cert); err == nil {
		return cert, key, nil
	}
	return b.pki.files(id)
}

// ingestNode starts a node child with an empty data file, streams csv into
// it and fills run's node figures. The node is left running.
func (b *bench) ingestNode(ctx context.Context, name, csv string, run *IngestRun) (_ *child, err error) {
	cert, key, err := b.nodeFiles()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(b.dir, name+".db")
	sock := filepath.Join(b.dir, name+".sock")
	c, err := startChild(ctx, b.dir, name, childConfig{
		Role: roleNode, TrustDomain: trustDomain, CACert: b.pki.caPath(), Cert: cert, Key: key,
		Data: data, Member: benchMember, AdminSocket: sock, Verbose: b.o.verbose,
	}, b.stderr)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	conn, err := dialSocket(sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	b.logf("ingesting %s into a node (%s)", filepath.Base(csv), name)
	stop := b.profile(ctx, "ingest-"+strings.TrimPrefix(name, "node-"), c)
	resp, d, err := ingestCSV(ctx, conn, csv)
	stop()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if resp.GetReceived() != uint64(b.o.records) || resp.GetAdded() != uint64(b.o.records) {
		return nil, fmt.Errorf("%s: node received %d and added %d records, want %d", name, resp.GetReceived(), resp.GetAdded(), b.o.records)
	}
	pm, err := stats.ProcMemory(c.PID())
	if err != nil {
		return nil, err
	}
	run.NodeSeconds = d.Seconds()
	run.NodeRecordsPerSec = float64(resp.GetReceived()) / d.Seconds()
	run.NodeAdded = resp.GetAdded()
	run.NodeReleaseSeconds = resp.GetReleaseComputation().AsDuration().Seconds()
	run.NodePeakRSSMB = stats.MB(pm.VmHWM)
	run.NodeAnonMB, run.NodeFileMB = stats.MB(pm.RssAnon), stats.MB(pm.RssFile)
	if fi, err := os.Stat(data); err == nil {
		run.NodeDataFileMB = stats.MB(uint64(fi.Size()))
	}
	b.logf("  node: %s records/s (%.1f s, of which the release %.1f s), peak RSS %.0f MB (after: %.0f MB anonymous, %.0f MB file pages)",
		rate(run.NodeRecordsPerSec), d.Seconds(), run.NodeReleaseSeconds, run.NodePeakRSSMB, run.NodeAnonMB, run.NodeFileMB)
	return c, nil
}

// recordsTable is the ministry's table, as it would load the same CSV.
const recordsTable = `(
	record_id  text PRIMARY KEY,
	metric     text NOT NULL,
	date       date NOT NULL,
	offence    text,
	channel    text,
	victim_age text,
	quantity   integer NOT NULL
)`

// ingestPG loads csv into a fresh table with COPY and fills run's
// PostgreSQL figures; a failure is recorded, not fatal.
func (b *bench) ingestPG(ctx context.Context, srv *pg.Server, table, csv string, run *IngestRun) {
	if srv == nil {
		return
	}
	fail := func(err error) {
		run.PGError = firstLine(err.Error())
		b.logf("  postgresql: %v", err)
	}
	if _, err := srv.Exec(ctx, "DROP TABLE IF EXISTS "+table+"; CREATE TABLE "+table+" "+recordsTable); err != nil {
		fail(err)
		return
	}
	f, err := os.Open(csv)
	if err != nil {
		fail(err)
		return
	}
	defer f.Close()
	b.logf("loading %s into PostgreSQL (%s)", filepath.Base(csv), table)
	d, err := srv.Copy(ctx, table, f)
	if err != nil {
		fail(err)
		return
	}
	out, err := srv.Exec(ctx, "SELECT count(*) FROM "+table)
	if err != nil {
		fail(err)
		return
	}
	if got := strings.TrimSpace(out); got != fmt.Sprint(b.o.records) {
		fail(fmt.Errorf("table %s holds %s rows after COPY, want %d", table, got, b.o.records))
		return
	}
	run.PGSeconds = d.Seconds()
	run.PGRecordsPerSec = float64(b.o.records) / d.Seconds()
	run.Ratio = run.NodeRecordsPerSec / run.PGRecordsPerSec
	b.logf("  postgresql: %s records/s (%.1f s)", rate(run.PGRecordsPerSec), d.Seconds())
}

// pgQuery is the node's Aggregate by month and offence over every metric,
// in SQL: what a ministry would run against its own table.
const pgQuery = `SELECT metric, date_trunc('month', date)::date AS month, coalesce(offence, 'unknown') AS offence, sum(quantity) AS count ` +
	`FROM records WHERE date BETWEEN '` + periodFromString + `' AND '` + periodToString + `' GROUP BY 1, 2, 3`

// aggregate is step 2: the node's Aggregate over mTLS, then PostgreSQL's
// GROUP BY with each index variant.
func (b *bench) aggregate(ctx context.Context, nodeChild *child, srv *pg.Server) error {
	conn, err := b.pki.dial(nodeChild.Addr, benchCoordinator, mtls.ExpectID(identity.Node(trustDomain, benchMember)))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := fedreportv1.NewAggregationServiceClient(conn)
	// As a coordinator asks: within a rollup, named by its id.
	req := &fedreportv1.AggregateRequest{
		From: periodFromString, To: periodToString, RollupId: "r00000001", RollupStartedAt: timestamppb.Now(),
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE},
	}
	var last *fedreportv1.AggregateResponse
	b.quiesce(ctx, srv)
	b.logf("timing %d node Aggregate calls over mTLS", b.o.aggregateCalls)
	call := func(ctx context.Context) error {
		resp, err := client.Aggregate(ctx, req)
		last = resp
		return err
	}
	if _, err := latencies(ctx, aggregateWarmup, 0, call); err != nil {
		return fmt.Errorf("node Aggregate: %w", err)
	}
	before, err := nodeChild.Histograms(ctx)
	if err != nil {
		return err
	}
	stop := b.profile(ctx, "aggregate", nodeChild)
	var lat stats.Latencies
	err = withClientGCPaused(func() (err error) {
		lat, err = latencies(ctx, 0, b.o.aggregateCalls, call)
		return err
	})
	stop()
	if err != nil {
		return fmt.Errorf("node Aggregate: %w", err)
	}
	after, err := nodeChild.Histograms(ctx)
	if err != nil {
		return err
	}
	a := &b.res.Aggregate
	a.Node = lat.Summarize()
	// The same calls with the client collecting as it goes: how much of a
	// Go client's tail is its own.
	gcLat, err := latencies(ctx, 0, b.o.aggregateCalls, call)
	if err != nil {
		return fmt.Errorf("node Aggregate: %w", err)
	}
	a.NodeClientGC = gcLat.Summarize()
	if a.NodeLogAppend, err = summarizeSince(after.Appends, before.Appends); err != nil {
		return err
	}
	if a.NodeHandling, err = summarizeSince(after.Aggregate, before.Aggregate); err != nil {
		return err
	}
	a.Request = fmt.Sprintf("%s..%s, every metric, by month and offence (%d cells over %s records)", periodFromString, periodToString, len(last.GetCells()), count(b.o.records))
	a.Method = "node: sequential calls from one mTLS client as a coordinator identity, client-side latency, the client's garbage collector paused (each call also appends the disclosure log, fsync'd); " +
		"PostgreSQL: pgbench, one client, prepared statement over loopback TCP, client-side latency from pgbench's per-transaction log; " +
		"each index variant measured on its own, after VACUUM ANALYZE; the fastest p50 (*) is the peer"
	b.logf("  node: p50 %s ms, p99 %s ms; its server's handling p50 %s ms, p99 %s ms; its disclosure log appends p50 %s ms, p99 %s ms, %.1f%% over 2 ms; with the client collecting: p50 %s ms, p99 %s ms",
		ms(a.Node.P50ms), ms(a.Node.P99ms), ms(a.NodeHandling.P50ms), ms(a.NodeHandling.P99ms),
		ms(a.NodeLogAppend.P50ms), ms(a.NodeLogAppend.P99ms), 100*a.NodeLogAppend.Over2ms,
		ms(a.NodeClientGC.P50ms), ms(a.NodeClientGC.P99ms))
	if a.DiskFloor, err = b.diskFloor(ctx, 1, aggregateWarmup, b.o.aggregateCalls, req, last, benchCoordinator.String()); err != nil {
		return err
	}
	if srv == nil {
		return nil
	}
	a.PGQuery = pgQuery
	if _, err := srv.Exec(ctx, "VACUUM (ANALYZE) records"); err != nil {
		a.PGError = firstLine(err.Error())
		return nil
	}
	variants := []PGVariant{
		{Name: "no secondary index (parallel seq scan)"},
		{Name: "covering B-tree, index-only scan", Index: "CREATE INDEX records_cover ON records (metric, date, offence) INCLUDE (quantity)",
			Settings: "enable_seqscan=off enable_bitmapscan=off"},
		{Name: "BRIN (date), bitmap heap scan", Index: "CREATE INDEX records_brin ON records USING brin (date)",
			Settings: "enable_seqscan=off enable_indexscan=off enable_indexonlyscan=off"},
	}
	for i := range variants {
		b.pgVariant(ctx, srv, &variants[i])
	}
	a.PG = variants
	var best *PGVariant
	for i, v := range variants {
		if v.Error == "" && (best == nil || v.Latency.P50ms < best.Latency.P50ms) {
			best = &variants[i]
		}
	}
	if best == nil {
		a.PGError = "every variant failed"
		return nil
	}
	a.PGBest = best.Name
	a.SpeedupP50 = best.Latency.P50ms / a.Node.P50ms
	a.SpeedupP99 = best.Latency.P99ms / a.Node.P99ms
	return nil
}

// pgVariant builds v's index, times the GROUP BY under v's planner settings
// and drops the index again. Failures are recorded in v.
func (b *bench) pgVariant(ctx context.Context, srv *pg.Server, v *PGVariant) {
	b.logf("timing PostgreSQL GROUP BY: %s", v.Name)
	fail := func(err error) { v.Error = firstLine(err.Error()) }
	if v.Index != "" {
		start := time.Now()
		if _, err := srv.Exec(ctx, v.Index); err != nil {
			fail(err)
			return
		}
		v.BuildSeconds = time.Since(start).Seconds()
		name := strings.Fields(v.Index)[2]
		defer func() {
			if _, err := srv.Exec(ctx, "DROP INDEX "+name); err != nil && v.Error == "" {
				fail(err)
			}
		}()
	}
	var sets, opts []string
	for _, s := range strings.Fields(v.Settings) {
		sets = append(sets, "SET "+s+";")
		opts = append(opts, "-c "+s)
	}
	plan, err := srv.Exec(ctx, strings.Join(sets, " ")+" EXPLAIN (COSTS OFF) "+pgQuery)
	if err != nil {
		fail(err)
		return
	}
	v.Plan = planSummary(plan)
	b.quiesce(ctx, srv)
	options := strings.Join(opts, " ")
	probe, err := srv.Bench(ctx, pgQuery, options, 3)
	if err != nil {
		fail(err)
		return
	}
	mean := time.Duration(probe.Summarize().MeanMs * float64(time.Millisecond))
	n := pgMinRuns
	if mean > 0 {
		n = int(b.o.pgSeconds / mean)
	}
	n = min(max(n, pgMinRuns), b.o.aggregateCalls)
	lat, err := srv.Bench(ctx, pgQuery, options, n)
	if err != nil {
		fail(err)
		return
	}
	v.Latency = lat.Summarize()
	b.logf("  postgresql: p50 %s ms, p99 %s ms over %d runs (%s)", ms(v.Latency.P50ms), ms(v.Latency.P99ms), n, v.Plan)
}

// planSummary condenses EXPLAIN output to its plan nodes.
func planSummary(plan string) string {
	var nodes []string
	for line := range strings.SplitSeq(plan, "\n") {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "->"))
		if t == "" || strings.Contains(t, ":") {
			continue // Group Key:, Filter:, Workers Planned: ...
		}
		nodes = append(nodes, strings.TrimSpace(t))
	}
	return strings.Join(nodes, " < ")
}
