package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// hungWarmupMax bounds the warm-up rollups of the hung-member step: the
// first ones open 199 TLS connections, which may take longer than the
// short member timeout.
const hungWarmupMax = 20

// coordinatorName is the name in the rollup step's coordinator's identity.
const coordinatorName = "coordinator"

// tmpfsDir is where the diagnostic variant of the rollup step keeps its
// member files, so that fsync costs nothing.
const tmpfsDir = "/dev/shm"

// federation is steps 3 to 5: member nodes in this process, a coordinator
// in a child, rollups, GetRollup throughput and the coordinator's memory;
// then a second coordinator with one hung member; then, to tell the cost
// of 200 members sharing one disk from the rest, the rollups again with
// the member files on tmpfs.
func (b *bench) federation(ctx context.Context) (err error) {
	o := b.o
	if !o.has("rollup") && !o.has("hung") && !o.has("tmpfs") {
		return nil
	}
	ru := &b.res.Rollup
	ru.Members, ru.MemberRecords = o.members, o.memberRecords
	ru.Spec = fmt.Sprintf("%s..%s, every metric, group by [%s]", periodFromString, periodToString, records.DimensionNames(o.groupBy))
	if !o.has("rollup") && !o.has("hung") {
		return b.rollupsOnTmpfs(ctx)
	}
	mdir := filepath.Join(b.dir, "members")
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return err
	}
	b.logf("starting %d member nodes with %s records each (files in %s)", o.members, count(o.memberRecords), mdir)
	mn, err := startMembers(ctx, b.pki, mdir, o.members, o.memberRecords, o.seed)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, mn.close()) }()

	if o.has("rollup") {
		coordData := filepath.Join(b.dir, "coordinator.db")
		coord, err := b.startCoordinator(ctx, coordinatorName, coordData, mn.list, 0)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, coord.stop()) }()
		if err := b.rollups(ctx, coord, mn); err != nil {
			return err
		}
		if err := b.throughput(ctx, coord); err != nil {
			return err
		}
		if fi, err := os.Stat(coordData); err == nil {
			b.res.Rollup.CoordinatorDBMB = stats.MB(uint64(fi.Size()))
		}
		if err := coord.stop(); err != nil {
			return err
		}
	}
	if o.has("hung") {
		if err := b.hung(ctx, mn); err != nil {
			return err
		}
	}
	if err := mn.close(); err != nil {
		return err
	}
	if !o.has("tmpfs") {
		return nil
	}
	return b.rollupsOnTmpfs(ctx)
}

// startCoordinator starts a coordinator child over members; timeout 0 is
// the coordinator's default member timeout.
func (b *bench) startCoordinator(ctx context.Context, name, data string, members []coordinator.Member, timeout time.Duration) (*child, error) {
	cert, key, err := b.pki.files(identity.Coordinator(trustDomain, name))
	if err != nil {
		return nil, err
	}
	return startChild(ctx, b.dir, name, childConfig{
		Role: roleCoordinator, TrustDomain: trustDomain, CACert: b.pki.caPath(), Cert: cert, Key: key,
		Data: data, Members: members, MemberTimeout: timeout, Verbose: b.o.verbose,
	}, b.stderr)
}

// spec is the benchmark's rollup: the whole operation, every metric, --rollup-by.
func (b *bench) spec() *fedreportv1.RollupSpec {
	return &fedreportv1.RollupSpec{From: periodFromString, To: periodToString, GroupBy: b.o.groupBy}
}

// memberRequest is what the coordinator asks each member for spec.
func memberRequest(spec *fedreportv1.RollupSpec) *fedreportv1.AggregateRequest {
	req := &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: timestamppb.Now(), From: spec.GetFrom(), To: spec.GetTo(), Metrics: spec.GetMetrics()}
	for _, d := range spec.GetGroupBy() {
		if d != fedreportv1.Dimension_DIMENSION_MEMBER {
			req.GroupBy = append(req.GroupBy, d)
		}
	}
	return req
}

// coordinatorConn connects to a coordinator child as id.
func (b *bench) coordinatorConn(c *child, id identity.ID) (*grpc.ClientConn, error) {
	return b.pki.dial(c.Addr, id, mtls.ExpectRole(trustDomain, identity.RoleCoordinator))
}

// startRollup returns a call that starts the benchmark's rollup on client
// and hands the result to check.
func (b *bench) startRollup(client fedreportv1.CoordinatorServiceClient, check func(*fedreportv1.Rollup) error) func(context.Context) error {
	spec := b.spec()
	return func(ctx context.Context) error {
		resp, err := client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
		if err != nil {
			return fmt.Errorf("StartRollup: %w", err)
		}
		return check(resp.GetRollup())
	}
}

// complete accepts only a rollup every member answered.
func complete(r *fedreportv1.Rollup) error {
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		return fmt.Errorf("rollup %s is %s, want COMPLETE (missing %v: %s)", r.GetId(), r.GetState(), r.GetMissingMembers(), r.GetFailureReason())
	}
	return nil
}

// rollups is step 3 and fills the coordinator's history for steps 4 and 5.
func (b *bench) rollups(ctx context.Context, coord *child, mn *members) error {
	o := b.o
	conn, err := b.coordinatorConn(coord, identity.Operator(trustDomain, "bench"))
	if err != nil {
		return err
	}
	defer conn.Close()
	var (
		mu   sync.Mutex // protects ids and size
		ids  []string
		size int
	)
	start := b.startRollup(fedreportv1.NewCoordinatorServiceClient(conn), func(r *fedreportv1.Rollup) error {
		if err := complete(r); err != nil {
			return err
		}
		mu.Lock()
		ids = append(ids, r.GetId())
		size = proto.Size(r)
		mu.Unlock()
		return nil
	})
	ru := &b.res.Rollup
	b.logf("timing %d rollups over %d members, one after the other", o.rollupSamples, o.members)
	b.quiesce(ctx, nil)
	stop := b.profile(ctx, "rollup", coord)
	lat, cpu, appends, err := timedRollups(ctx, coord, mn, o.rollupSamples, start)
	stop()
	if err != nil {
		return err
	}
	ru.Latency, ru.CPU, ru.MemberLogAppend = lat.Summarize(), cpu, appends
	b.logf("  rollup: p50 %s ms, p99 %s ms; CPU per rollup (ms): %s; members' disclosure log appends p50 %s ms, p99 %s ms",
		ms(ru.Latency.P50ms), ms(ru.Latency.P99ms), cpu, ms(appends.P50ms), ms(appends.P99ms))

	first := mn.list[0]
	mconn, err := b.pki.dial(first.Address, benchCoordinator, mtls.ExpectID(identity.Node(trustDomain, first.Code)))
	if err != nil {
		return err
	}
	defer mconn.Close()
	mclient := fedreportv1.NewAggregationServiceClient(mconn)
	mreq := memberRequest(b.spec())
	b.logf("timing %d Aggregate calls to member %s (what the coordinator asks each member)", o.aggregateCalls, first.Code)
	var mresp *fedreportv1.AggregateResponse
	mlat, err := latencies(ctx, aggregateWarmup, o.aggregateCalls, func(ctx context.Context) (err error) {
		mresp, err = mclient.Aggregate(ctx, mreq)
		return err
	})
	if err != nil {
		return fmt.Errorf("member Aggregate: %w", err)
	}
	ru.MemberAggregate = mlat.Summarize()
	ru.RatioP99 = ru.Latency.P99ms / ru.MemberAggregate.P99ms
	b.logf("  member Aggregate: p50 %s ms, p99 %s ms", ms(ru.MemberAggregate.P50ms), ms(ru.MemberAggregate.P99ms))

	// The members' entries as a rollup makes them: asked by the
	// coordinator, with a rollup id.
	mreq.RollupId = ids[len(ids)-1]
	coordID := identity.Coordinator(trustDomain, coordinatorName)
	if ru.DiskFloor, err = b.diskFloor(ctx, o.members, rollupWarmup, o.rollupSamples, mreq, mresp, coordID.String()); err != nil {
		return err
	}

	remaining := o.rollups - len(ids)
	b.logf("storing %s more rollups, %d at a time", count(remaining), fillConcurrency)
	fillStart := time.Now()
	if err := fill(ctx, remaining, fillConcurrency, start); err != nil {
		return err
	}
	ru.FillSeconds = time.Since(fillStart).Seconds()
	ru.FillPerSec = float64(remaining) / ru.FillSeconds
	ru.Stored = len(ids)
	ru.RollupBytes = size
	b.rollupIDs = ids
	b.logf("  %s rollups stored, %s bytes each (%.1f/s while filling)", count(ru.Stored), count(size), ru.FillPerSec)
	return nil
}

// fill runs n calls of call, concurrency at a time.
func fill(ctx context.Context, n, concurrency int, call func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan struct{})
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range concurrency {
		wg.Go(func() {
			for range jobs {
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				err := call(cctx)
				ccancel()
				if err != nil {
					errOnce.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for range n {
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// throughput is step 4 (GetRollup against Health/Check on one connection)
// and step 5 (the coordinator's memory before and after).
func (b *bench) throughput(ctx context.Context, coord *child) error {
	o := b.o
	mem := &b.res.Memory
	mem.Process = "coordinator alone in its own process"
	mem.StoredRollups = len(b.rollupIDs)
	var err error
	if mem.AfterFill, err = coord.Mem(ctx); err != nil {
		return err
	}
	conn, err := b.coordinatorConn(coord, identity.Analyst(trustDomain, "bench"))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := fedreportv1.NewCoordinatorServiceClient(conn)
	health := healthpb.NewHealthClient(conn)
	ids := b.rollupIDs
	full := fedreportv1.RollupView_ROLLUP_VIEW_FULL
	getRollup := func(ctx context.Context, _ int, _ uint64) error {
		_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))]})
		return err
	}
	getRollupFull := func(ctx context.Context, _ int, _ uint64) error {
		_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))], View: full})
		return err
	}
	getRollupRaw := func(ctx context.Context, _ int, _ uint64) error {
		var d discarded
		return conn.Invoke(ctx, fedreportv1.CoordinatorService_GetRollup_FullMethodName,
			&fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))], View: full}, &d, grpc.ForceCodec(skipDecode{}))
	}
	check := func(ctx context.Context, _ int, _ uint64) error {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("health: %s", resp.GetStatus())
		}
		return err
	}
	single, err := latencies(ctx, aggregateWarmup, 200, func(ctx context.Context) error { return getRollup(ctx, 0, 0) })
	if err != nil {
		return fmt.Errorf("GetRollup: %w", err)
	}
	t := &b.res.Throughput
	t.Concurrency, t.Seconds, t.Rounds = o.concurrency, o.qpsDuration.Seconds(), o.qpsRounds
	t.GetRollupMs = single.Summarize().P50ms
	if t.DecodeUs, t.EncodeUs, t.BasicBytes, t.FullBytes, err = codecCost(ctx, client, ids[0]); err != nil {
		return err
	}
	b.logf("measuring GetRollup and Health/Check throughput at concurrency %d (%d rounds of %s each)", o.concurrency, o.qpsRounds, o.qpsDuration)
	stop := b.profile(ctx, "throughput", coord)
	for range o.qpsRounds {
		h, err := qps(ctx, o.concurrency, o.qpsDuration, check)
		if err != nil {
			stop()
			return fmt.Errorf("Health/Check: %w", err)
		}
		g, err := qps(ctx, o.concurrency, o.qpsDuration, getRollup)
		if err != nil {
			stop()
			return fmt.Errorf("GetRollup: %w", err)
		}
		f, err := qps(ctx, o.concurrency, o.qpsDuration, getRollupFull)
		if err != nil {
			stop()
			return fmt.Errorf("GetRollup (FULL): %w", err)
		}
		raw, err := qps(ctx, o.concurrency, o.qpsDuration, getRollupRaw)
		if err != nil {
			stop()
			return fmt.Errorf("GetRollup (not decoded): %w", err)
		}
		t.Health, t.GetRollup, t.GetRollupFull, t.GetRollupNoDecode = max(t.Health, h), max(t.GetRollup, g), max(t.GetRollupFull, f), max(t.GetRollupNoDecode, raw)
		b.logf("  round: Health/Check %s/s, GetRollup %s/s, GetRollup FULL %s/s, GetRollup FULL not decoded by the client %s/s", rate(h), rate(g), rate(f), rate(raw))
	}
	stop()
	t.Ratio = t.GetRollup / t.Health
	if mem.AfterReads, err = coord.Mem(ctx); err != nil {
		return err
	}
	mem.PeakRSSMB = stats.MB(mem.AfterReads.Proc.VmHWM)
	mem.RSSMB = stats.MB(mem.AfterReads.Proc.VmRSS)
	mem.HeapAllocMB = stats.MB(mem.AfterReads.HeapAlloc)
	b.logf("  coordinator: RSS %.0f MB, peak %.0f MB, heap %.0f MB", mem.RSSMB, mem.PeakRSSMB, mem.HeapAllocMB)
	return nil
}

// hung is step 3 with one member that never answers, under a short member
// timeout: how far past the deadline the rollup ends. The hung member is
// last in the registry, the worst place: it is asked last. As a diagnosis
// the same is timed with it first.
func (b *bench) hung(ctx context.Context, mn *members) error {
	hr := &b.res.Hung
	hr.TimeoutMs = stats.Ms(b.o.hungTimeout)
	var err error
	if hr.Latency, hr.OverDeadline, hr.States, err = b.hungRollups(ctx, mn, false); err != nil {
		return err
	}
	_, hr.FirstOverDeadline, _, err = b.hungRollups(ctx, mn, true)
	return err
}

// hungRollups times rollups over mn's members with the last one replaced by
// a member that never answers, placed first or last in the registry. It
// returns the rollup latencies, their excess over the member timeout, and
// what the rollups reported.
func (b *bench) hungRollups(ctx context.Context, mn *members, first bool) (lat, over stats.Summary, states string, err error) {
	o := b.o
	hungCode := mn.list[len(mn.list)-1].Code
	h, err := startHungMember(b.pki, hungCode)
	if err != nil {
		return lat, over, "", err
	}
	defer func() { err = errors.Join(err, h.close()) }()
	hungMember := coordinator.Member{Code: hungCode, Address: h.Addr}
	list := append(slices.Clone(mn.list[:len(mn.list)-1]), hungMember)
	hungAt, name := len(list)-1, "coordinator-hung-last"
	if first {
		list = append([]coordinator.Member{hungMember}, mn.list[:len(mn.list)-1]...)
		hungAt, name = 0, "coordinator-hung-first"
	}
	coord, err := b.startCoordinator(ctx, name, filepath.Join(b.dir, name+".db"), list, o.hungTimeout)
	if err != nil {
		return lat, over, "", err
	}
	defer func() { err = errors.Join(err, coord.stop()) }()
	conn, err := b.coordinatorConn(coord, identity.Operator(trustDomain, "bench"))
	if err != nil {
		return lat, over, "", err
	}
	defer conn.Close()

	// Only the hung member may be missing; others missing under the short
	// deadline are counted, not hidden.
	var onlyHung, moreMissing int
	start := b.startRollup(fedreportv1.NewCoordinatorServiceClient(conn), func(r *fedreportv1.Rollup) error {
		members := r.GetMembers()
		if len(members) != len(list) || members[hungAt].GetMember() != hungCode || members[hungAt].GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT {
			return fmt.Errorf("rollup %s: want the hung member %s at %d with status TIMEOUT", r.GetId(), hungCode, hungAt)
		}
		if r.GetState() == fedreportv1.RollupState_ROLLUP_STATE_PARTIAL && slices.Equal(r.GetMissingMembers(), []string{hungCode}) {
			onlyHung++
		} else {
			moreMissing++
		}
		return nil
	})
	where := "last"
	if first {
		where = "first"
	}
	b.logf("warming up a coordinator with member %s hung, %s in the registry (member timeout %s)", hungCode, where, o.hungTimeout)
	for i := 0; onlyHung == 0; i++ {
		if i == hungWarmupMax {
			return lat, over, "", fmt.Errorf("hung member: after %d rollups, none had every other member answer within %s", hungWarmupMax, o.hungTimeout)
		}
		if _, err := latencies(ctx, 0, 1, start); err != nil {
			return lat, over, "", err
		}
	}
	onlyHung, moreMissing = 0, 0
	b.logf("timing %d rollups", o.hungRollups)
	stop := b.profile(ctx, name, coord)
	l, err := latencies(ctx, 0, o.hungRollups, start)
	stop()
	if err != nil {
		return lat, over, "", err
	}
	excess := make(stats.Latencies, len(l))
	for i, d := range l {
		excess[i] = d - o.hungTimeout
	}
	lat, over = l.Summarize(), excess.Summarize()
	states = fmt.Sprintf("%d PARTIAL missing only %s (TIMEOUT); %d also missing members that did not answer within %s",
		onlyHung, hungCode, moreMissing, o.hungTimeout)
	b.logf("  over the deadline: p50 %s ms, p99 %s ms (%s)", ms(over.P50ms), ms(over.P99ms), states)
	return lat, over, states, nil
}

// rollupsOnTmpfs times the rollups again with every member file on tmpfs,
// where fsync is free: on one machine 200 members share one disk and its
// journal, which 200 member machines would not. It is a diagnosis, not a
// target; without tmpfs it is skipped.
func (b *bench) rollupsOnTmpfs(ctx context.Context) (err error) {
	o := b.o
	tr := &b.res.Rollup.Tmpfs
	if fi, err := os.Stat(tmpfsDir); err != nil || !fi.IsDir() {
		tr.Skipped = tmpfsDir + " not found"
		return nil
	}
	dir, err := os.MkdirTemp(tmpfsDir, "fedreport-bench-members-")
	if err != nil {
		tr.Skipped = err.Error()
		return nil
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	b.logf("starting %d member nodes and a coordinator with their files on tmpfs (%s)", o.members, dir)
	mn, err := startMembers(ctx, b.pki, dir, o.members, o.memberRecords, o.seed)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, mn.close()) }()
	coord, err := b.startCoordinator(ctx, "coordinator-tmpfs", filepath.Join(dir, "coordinator.db"), mn.list, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, coord.stop()) }()
	conn, err := b.coordinatorConn(coord, identity.Operator(trustDomain, "bench"))
	if err != nil {
		return err
	}
	defer conn.Close()
	b.logf("timing %d rollups over %d members on tmpfs", o.rollupSamples, o.members)
	b.quiesce(ctx, nil)
	stop := b.profile(ctx, "rollup-tmpfs", coord)
	lat, cpu, appends, err := timedRollups(ctx, coord, mn, o.rollupSamples, b.startRollup(fedreportv1.NewCoordinatorServiceClient(conn), complete))
	stop()
	if err != nil {
		return err
	}
	tr.Latency, tr.CPU, tr.MemberLogAppend = lat.Summarize(), cpu, appends
	b.logf("  rollup, members on tmpfs: p50 %s ms, p99 %s ms; CPU per rollup (ms): %s; members' disclosure log appends p50 %s ms, p99 %s ms",
		ms(tr.Latency.P50ms), ms(tr.Latency.P99ms), cpu, ms(appends.P50ms), ms(appends.P99ms))

	// The same fan-out from the coordinator's process without the
	// coordinator's work: the calls alone, then the members' answers.
	req := memberRequest(b.spec())
	req.RollupId = fanOutRollupID
	agg, err := aggregateFanOut(req)
	if err != nil {
		return err
	}
	f, err := b.fanOuts(ctx, coord, rollupWarmup, o.rollupSamples, fanOutRequest{Call: healthCall}, agg)
	if err != nil {
		return err
	}
	tr.FanOutHealth, tr.FanOutAggregate = f[0], f[1]
	return nil
}

// timedRollups makes rollupWarmup calls of start, then times samples more,
// one after the other. It returns their latencies, the CPU time per timed
// call of this process (which serves the members) and of coord, and the
// members' disclosure log appends meanwhile (their own histogram). Nothing
// else runs meanwhile, so the two CPU times add up to what a rollup costs
// the cores.
func timedRollups(ctx context.Context, coord *child, mn *members, samples int, start func(context.Context) error) (_ stats.Latencies, _ RollupCPU, appends stats.HistogramSummary, err error) {
	if _, err := latencies(ctx, rollupWarmup, 0, start); err != nil {
		return nil, RollupCPU{}, appends, err
	}
	cpu0, err := stats.CPUTime()
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	c0, err := coord.Mem(ctx)
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	h0, err := gatherNode(mn.reg)
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	lat, err := latencies(ctx, 0, samples, start)
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	cpu1, err := stats.CPUTime()
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	c1, err := coord.Mem(ctx)
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	h1, err := gatherNode(mn.reg)
	if err != nil {
		return nil, RollupCPU{}, appends, err
	}
	if appends, err = summarizeSince(h1.Appends, h0.Appends); err != nil {
		return nil, RollupCPU{}, appends, err
	}
	n := float64(samples)
	return lat, RollupCPU{
		MembersMs:     stats.Ms(cpu1-cpu0) / n,
		CoordinatorMs: (c1.CPUSeconds - c0.CPUSeconds) * 1000 / n,
	}, appends, nil
}

// codecCost fetches rollup id and returns what decoding and encoding its
// GetRollupResponse in the FULL view costs in this process, in microseconds:
// the part of a GetRollup that does not depend on the network; and the sizes
// of the BASIC and FULL answers.
func codecCost(ctx context.Context, client fedreportv1.CoordinatorServiceClient, id string) (decodeUs, encodeUs float64, basicBytes, fullBytes int, err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	basic, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: id})
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("GetRollup: %w", err)
	}
	resp, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: id, View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("GetRollup: %w", err)
	}
	raw, err := proto.Marshal(resp)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	const n = 500
	start := time.Now()
	for range n {
		var r fedreportv1.GetRollupResponse
		if err := proto.Unmarshal(raw, &r); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	decode := time.Since(start)
	start = time.Now()
	for range n {
		if _, err := proto.Marshal(resp); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	encode := time.Since(start)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	return us(decode), us(encode), proto.Size(basic), len(raw), nil
}
