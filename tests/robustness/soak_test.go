package robustness

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The soak is documented in docs/benchmarks.md ("Soak"). CI runs the short form;
// the documented run is
//
//	go test ./tests/robustness -run TestSoak -timeout 40m -args -soak 30m -soak-report soak.txt
var (
	soakDuration = flag.Duration("soak", 0, "run TestSoak for this long (e.g. 30m); 0 runs the short form CI runs (about 15s)")
	soakReport   = flag.String("soak-report", "", "write TestSoak's summary and every sample to this file")
)

// soakParams size one soak run.
type soakParams struct {
	warmUp, main     time.Duration // load before the baseline, and after it
	sampleEvery      time.Duration // memory and goroutine samples of every process
	ingestEvery      time.Duration // per member
	rollupEvery      time.Duration // one operator; StartRollup allows 0.5/s sustained
	readEvery        time.Duration // GetRollup/ListRollups over one long-lived connection
	cliReadEvery     time.Duration // rollups, rollups show, members, audit as new processes
	pool             int           // record ids per member: new records, corrections and retractions cycle through them
	maxStream        int           // records per ingest stream, at most
	quietSamples     int           // samples whose minimum is a quiescent goroutine or fd count
	heapRel, heapAbs float64       // last quarter's mean may exceed the second's by heapRel·it + heapAbs bytes
	rssRel, rssAbs   float64       // the same for anonymous RSS
}

func soakParamsFor(d time.Duration) soakParams {
	if d <= 0 {
		// The short form keeps the soak from rotting in CI (go test -race on two
		// busy cores): every operation and check runs, the flatness bounds only
		// catch a gross leak.
		return soakParams{
			warmUp: 4 * time.Second, main: 12 * time.Second, sampleEvery: time.Second,
			ingestEvery: 700 * time.Millisecond, rollupEvery: 1500 * time.Millisecond,
			readEvery: 300 * time.Millisecond, cliReadEvery: 3 * time.Second,
			pool: 2000, maxStream: 300, quietSamples: 3,
			heapRel: 1, heapAbs: 32 << 20, rssRel: 1, rssAbs: 64 << 20,
		}
	}
	// Long form: two minutes of warm-up (connections, caches, the pools of
	// records fill), then the measured run. A leak of a few kilobytes per
	// operation adds megabytes between the second and the last quarter,
	// while the quarter means of a flat process move by a few percent.
	warm := min(2*time.Minute, d/5)
	return soakParams{
		warmUp: warm, main: d - warm, sampleEvery: 5 * time.Second,
		ingestEvery: 1500 * time.Millisecond, rollupEvery: 2500 * time.Millisecond,
		readEvery: time.Second, cliReadEvery: 10 * time.Second,
		pool: 20000, maxStream: 1500, quietSamples: 5,
		heapRel: 0.25, heapAbs: 2 << 20, rssRel: 0.25, rssAbs: 4 << 20,
	}
}

// TestSoak runs three member nodes and a coordinator as real processes with
// mTLS and metrics, and for the soak's duration streams ingests, corrections
// and retractions into the nodes through their admin sockets, runs rollups
// and reads rollups and audit logs back, while it samples every process's
// memory, goroutines and open files. Every rollup must be complete and equal
// to what the test computes from the records it sent, every node file must
// verify after the stop, and goroutines, open files, heap and anonymous RSS
// must stay flat.
func TestSoak(t *testing.T) {
	t.Parallel()
	p := soakParamsFor(*soakDuration)
	// go test's default -timeout is 10m: say so before the soak, not after.
	if dl, ok := t.Deadline(); ok && time.Until(dl) < p.warmUp+p.main+2*time.Minute {
		t.Fatalf("-soak %s runs for about %s: give go test a -timeout of %s or more (its default is 10m)",
			*soakDuration, p.warmUp+p.main+time.Minute, p.warmUp+p.main+10*time.Minute)
	}
	s := newSoak(t, p)
	ctx := t.Context()

	s.startSampler(ctx)
	// The report is written on a failure too: the samples up to it are
	// what a failed soak has to show.
	var verdict []flatness
	defer func() { s.report(verdict) }()
	t.Logf("soak: %s warm-up, %s measured; samples every %s", p.warmUp, p.main, p.sampleEvery)
	s.load(ctx, p.warmUp, 0)
	baseline := s.quiet(ctx)
	mainStart := time.Since(s.start)
	s.load(ctx, p.main, 1)
	final := s.quiet(ctx)
	s.stopSampler()

	// With ingest stopped every view is checked once more against the final
	// records, and must be exact where no member suppressed a cell.
	for i := range soakViews {
		r := s.rollup(ctx, i)
		if err := s.check(r); err != nil {
			t.Errorf("final rollup %s (%s): %v", r.GetId(), soakViews[i].name, err)
		}
	}
	s.stopAndVerify()
	verdict = s.judge(baseline, final, mainStart)
}

// soakViews are the rollups the soak runs in turn.
var soakViews = []struct {
	name     string
	from, to string
	metrics  []string // empty: all
	by       []string
}{
	{name: "totals", from: "2020-01-01", to: "2020-09-30"},
	{name: "by member and month", from: "2020-01-01", to: "2020-09-30", by: []string{"member", "month"}},
	{name: "arrests and victims by offence and channel", from: "2020-01-01", to: "2020-09-30",
		metrics: []string{"arrests", "victims_identified"}, by: []string{"offence", "channel"}},
	{name: "mid-March to June by month", from: "2020-03-01", to: "2020-06-30", by: []string{"month"}},
}

var (
	soakMetrics  = []string{"arrests", "victims_identified", "sites_blocked", "judicial_referrals", "reports_received"}
	soakOffences = []string{"", "csam_distribution", "csam_production", "grooming", "sextortion", "live_streaming", "other"}
	soakChannels = []string{"", "website", "app", "social_media", "messaging", "darknet", "p2p", "other"}
	soakAges     = []string{"", "0-5", "6-11", "12-14", "15-17"}
	soakMetricOf = map[fedreportv1.Metric]string{
		fedreportv1.Metric_METRIC_ARRESTS:            "arrests",
		fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED: "victims_identified",
		fedreportv1.Metric_METRIC_SITES_BLOCKED:      "sites_blocked",
		fedreportv1.Metric_METRIC_JUDICIAL_REFERRALS: "judicial_referrals",
		fedreportv1.Metric_METRIC_REPORTS_RECEIVED:   "reports_received",
		fedreportv1.Metric_METRIC_UNSPECIFIED:        "unspecified",
	}
)

// soakRecord is one record as the test sent it; "" is unknown.
type soakRecord struct {
	metric, date, offence, channel, age string
	qty                                 uint64
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// cellKey names a cell of a view the way the coordinator labels it.
type cellKey struct {
	view                                    int
	member, metric, month, offence, channel string
}

// expected is what each view of one member holds at one data version.
type expected map[cellKey]uint64

// cellsOf computes every view from a member's live records: the test's own
// arithmetic, independent of the node's counters.
func cellsOf(live map[int]soakRecord) expected {
	e := expected{}
	for _, r := range live {
		for v, view := range soakViews {
			if r.date < view.from || r.date > view.to || (len(view.metrics) > 0 && !slices.Contains(view.metrics, r.metric)) {
				continue
			}
			k := cellKey{view: v, metric: r.metric}
			for _, d := range view.by {
				switch d {
				case "month":
					k.month = r.date[:7]
				case "offence":
					k.offence = orUnknown(r.offence)
				case "channel":
					k.channel = orUnknown(r.channel)
				}
			}
			e[k] += r.qty
		}
	}
	return e
}

// soakMember is one member node and the test's model of what it holds.
type soakMember struct {
	code, db, sock, metrics string
	k                       uint32
	proc                    *proc
	dir                     string
	rng                     *rand.Rand

	live map[int]soakRecord // owned by the member's ingest worker
	last string             // the last stream file, for an idempotent resend

	mu       sync.Mutex // protects the fields below
	changed  *sync.Cond // broadcast when versions grows
	versions map[uint64]expected
	acked    uint64 // the data version of the last acknowledged write
}

// at returns the expected views at data version v, waiting for the ingest
// that made v to be acknowledged (a rollup can see a commit before its
// ingest command returns).
func (m *soakMember) at(ctx context.Context, v uint64) (expected, error) {
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.changed.Broadcast()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if e, ok := m.versions[v]; ok {
			return e, nil
		}
		if v < m.acked {
			return nil, fmt.Errorf("%s answered at data version %d, which no acknowledged write made (acknowledged: %d)", m.code, v, m.acked)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s answered at data version %d; the test's last acknowledged write made %d", m.code, v, m.acked)
		}
		m.changed.Wait()
	}
}

// ack records the member's records as the state at data version v, which
// the node reported for the write just made.
func (m *soakMember) ack(v uint64) error {
	e := cellsOf(m.live)
	m.mu.Lock()
	defer m.mu.Unlock()
	if v <= m.acked {
		return fmt.Errorf("%s: a write that changed records left data version %d (before it: %d)", m.code, v, m.acked)
	}
	m.versions[v], m.acked = e, v
	m.changed.Broadcast()
	return nil
}

// floor is the oldest data version a rollup started now can see.
func (m *soakMember) floor() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acked
}

// prune forgets versions no later rollup can see.
func (m *soakMember) prune(floor uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for v := range m.versions {
		if v < floor {
			delete(m.versions, v)
		}
	}
}

// soakSample is one scrape of one process.
type soakSample struct {
	at                     time.Duration // since the soak started
	phase                  int           // 0 warm-up, 1 measured
	proc                   string
	rss, anon, heap        float64 // bytes: VmRSS, RssAnon, Go heap in use
	goroutines, fds, liveG float64
	// appends and appendSeconds are a node's disclosure log appends so
	// far and the time they took (node.DisclosureAppendMetric).
	appends, appendSeconds float64
}

// soakCounts are the operations done, for the report.
type soakCounts struct {
	streams, recNew, recChanged, recUnchanged, resends atomic.Int64
	retracts, recRetracted                             atomic.Int64
	rollups, rateLimited, exactCells, boundedCells     atomic.Int64
	getRollups, listRollups, cliReads, audits          atomic.Int64
}

type soak struct {
	t       *testing.T
	p       soakParams
	start   time.Time
	fed     federation
	members []*soakMember
	coord   *proc
	coordMx string
	coordAd string
	client  fedreportv1.CoordinatorServiceClient
	opArgs  []string // --coordinator, --cacert, --cert, --key of the operator
	anArgs  []string // the same for the analyst
	counts  soakCounts

	views sync.Map // rollup id → index in soakViews

	mu      sync.Mutex         // protects started, ids, samples
	started map[string]started // rollup id → what StartRollup returned
	ids     []string           // in the order StartRollup returned them
	samples []soakSample

	phase       atomic.Int32
	stopOnce    sync.Once
	stopSamples context.CancelFunc
	sampled     chan struct{}
}

var metricsRE = regexp.MustCompile(`msg="metrics serving" addr=(\S+)`)

func newSoak(t *testing.T, p soakParams) *soak {
	codes := []string{"FR", "IT", "SG"}
	ids := []identity.ID{identity.Coordinator("isa", "main"), identity.Operator("isa", "soak"), identity.Analyst("isa", "soak")}
	for _, c := range codes {
		ids = append(ids, identity.Node("isa", c))
	}
	s := &soak{t: t, p: p, start: time.Now(), fed: newFederation(t, ids...), started: map[string]started{}}
	dir := t.TempDir()
	var memberFlags []string
	for i, c := range codes {
		m := &soakMember{
			code: c, db: filepath.Join(dir, c+".db"), sock: filepath.Join(dir, c+".sock"), dir: dir,
			k: 3, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i))),
			live: map[int]soakRecord{}, versions: map[uint64]expected{0: {}},
		}
		if c == "SG" {
			m.k = 5 // one member suppresses small cells: its totals are bounds
		}
		m.changed = sync.NewCond(&m.mu)
		cert, key := s.fed.files(identity.Node("isa", c))
		m.proc = start(t, "node", "--member", c, "--data", m.db, "--listen", "127.0.0.1:0", "--admin-socket", m.sock,
			"--cacert", s.fed.ca, "--cert", cert, "--key", key, "--metrics-listen", "127.0.0.1:0",
			"--min-cell-count", strconv.Itoa(int(m.k)), "--tables", "offence;channel;offence,channel")
		got := waitLogs(t, m.proc, 30*time.Second, metricsRE, nodeServingRE)
		m.metrics = got[0]
		memberFlags = append(memberFlags, "--member", c+"="+got[1])
		s.members = append(s.members, m)
	}
	cert, key := s.fed.files(identity.Coordinator("isa", "main"))
	s.coord = start(t, append([]string{"coordinator", "--data", filepath.Join(dir, "coord.db"), "--listen", "127.0.0.1:0",
		"--cacert", s.fed.ca, "--cert", cert, "--key", key, "--metrics-listen", "127.0.0.1:0"}, memberFlags...)...)
	got := waitLogs(t, s.coord, 30*time.Second, metricsRE, servingRE)
	s.coordMx, s.coordAd = got[0], got[1]

	for _, role := range []identity.ID{identity.Operator("isa", "soak"), identity.Analyst("isa", "soak")} {
		cert, key := s.fed.files(role)
		args := []string{"--coordinator", s.coordAd, "--cacert", s.fed.ca, "--cert", cert, "--key", key}
		if role.Role == identity.RoleOperator {
			s.opArgs = args
		} else {
			s.anArgs = args
		}
	}
	cfg := mtls.ClientConfig(s.fed.source(t, identity.Analyst("isa", "soak")), mtls.ExpectRole("isa", identity.RoleCoordinator))
	conn, err := grpc.NewClient(s.coordAd, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = fedreportv1.NewCoordinatorServiceClient(conn)
	return s
}

// waitLogs waits for a log line matching each of res, in any order, and
// returns their first submatches.
func waitLogs(t *testing.T, p *proc, timeout time.Duration, res ...*regexp.Regexp) []string {
	t.Helper()
	got := make([]string, len(res))
	left := len(res)
	deadline := time.After(timeout)
	for left > 0 {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("process exited (%v) while starting:\n%s", p.err, p.output())
			}
			for i, re := range res {
				if m := re.FindStringSubmatch(line); m != nil && got[i] == "" {
					got[i] = m[1]
					left--
				}
			}
		case <-deadline:
			t.Fatalf("the process did not log %v within %s:\n%s", res, timeout, p.output())
		}
	}
	return got
}

// load runs the workers for d: one ingest worker per member, one operator
// running rollups, readers over one connection and as new processes.
func (s *soak) load(ctx context.Context, d time.Duration, phase int) {
	s.phase.Store(int32(phase))
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	every := func(interval time.Duration, op func(context.Context) error) {
		g.Go(func() error {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				if err := op(gctx); err != nil {
					if gctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
						return nil // the phase ended before this operation began
					}
					return err
				}
				select {
				case <-gctx.Done():
					return nil
				case <-tick.C:
				}
			}
		})
	}
	for _, m := range s.members {
		every(s.p.ingestEvery, func(ctx context.Context) error { return s.write(ctx, m) })
	}
	views := 0
	every(s.p.rollupEvery, func(ctx context.Context) error {
		v := views % len(soakViews)
		views++
		r, err := s.startRollup(ctx, v)
		if err != nil {
			return err
		}
		return s.check(r)
	})
	every(s.p.readEvery, s.read)
	every(s.p.cliReadEvery, s.cliRead)
	if err := g.Wait(); err != nil {
		for _, m := range s.members {
			s.t.Logf("node %s's log:\n%s", m.code, m.proc.output())
		}
		s.t.Fatalf("soak phase %d: %v", phase, err)
	}
}

// cli runs a fedreport client verb; an error carries its output. The
// command is not bound to ctx's deadline: a write cut off midway would
// leave the test not knowing what the node holds.
func (s *soak) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Minute)
	defer cancel()
	out, err := run(s.t, ctx, args...)
	if err != nil {
		return out, fmt.Errorf("fedreport %s: %w\n%s", strings.Join(args[:1], " "), err, out)
	}
	return out, nil
}

var (
	ingestedRE  = regexp.MustCompile(`ingested (\d+) records?: (\d+) new, (\d+) changed, (\d+) unchanged; data version (\d+)`)
	retractedRE = regexp.MustCompile(`retracted (\d+) records?; data version (\d+)`)
)

// write sends one stream of new records, corrections and unchanged
// records, or retracts records, or resends the last stream (which must
// change nothing), and updates the member's model once the node acknowledged.
func (s *soak) write(ctx context.Context, m *soakMember) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var used, free []int
	for id := range s.p.pool {
		if _, ok := m.live[id]; ok {
			used = append(used, id)
		} else {
			free = append(free, id)
		}
	}
	roll := m.rng.IntN(10)
	switch {
	case roll == 0 && m.last != "":
		out, err := s.cli("ingest", "--node", "unix://"+m.sock, m.last)
		if err != nil {
			return err
		}
		g := ingestedRE.FindStringSubmatch(out)
		if g == nil || g[2] != "0" || g[3] != "0" || g[5] != strconv.FormatUint(m.floor(), 10) {
			return fmt.Errorf("%s: resending %s (data version %d) changed something: %s", m.code, m.last, m.floor(), out)
		}
		s.counts.resends.Add(1)
		return nil
	case roll <= 2 && len(used) > 0:
		n := 1 + m.rng.IntN(min(len(used), max(1, s.p.maxStream/10)))
		m.rng.Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
		path := filepath.Join(m.dir, m.code+"-retract.txt")
		var b strings.Builder
		for _, id := range used[:n] {
			fmt.Fprintf(&b, "%s\n", soakID(m.code, id))
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			return err
		}
		out, err := s.cli("retract", "--node", "unix://"+m.sock, "--file", path)
		if err != nil {
			return err
		}
		g := retractedRE.FindStringSubmatch(out)
		if g == nil || g[1] != strconv.Itoa(n) {
			return fmt.Errorf("%s: retracted %d known records, got %q", m.code, n, out)
		}
		for _, id := range used[:n] {
			delete(m.live, id)
		}
		v, _ := strconv.ParseUint(g[2], 10, 64)
		if err := m.ack(v); err != nil {
			return err
		}
		s.counts.retracts.Add(1)
		s.counts.recRetracted.Add(int64(n))
		m.last = "" // a resend would now add records back
		return nil
	}

	// A stream: mostly new records while the pool has room, then mostly
	// corrections; some records are sent again unchanged.
	size := 1 + m.rng.IntN(s.p.maxStream)
	m.rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	m.rng.Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
	nNew := min(len(free), size*(1+m.rng.IntN(3))/4)
	nChanged := min(len(used), size-nNew)
	nUnchanged := min(len(used)-nChanged, m.rng.IntN(size/5+1))
	next := map[int]soakRecord{}
	for _, id := range free[:nNew] {
		next[id] = randomRecord(m.rng)
	}
	for _, id := range used[:nChanged] {
		r := randomRecord(m.rng)
		for r == m.live[id] {
			r = randomRecord(m.rng)
		}
		next[id] = r
	}
	for _, id := range used[nChanged : nChanged+nUnchanged] {
		next[id] = m.live[id]
	}
	if len(next) == 0 {
		return nil
	}
	ext := ".csv"
	if m.rng.IntN(3) == 0 {
		ext = ".jsonl"
	}
	path := filepath.Join(m.dir, m.code+"-stream"+ext)
	if err := writeStream(path, m.code, next); err != nil {
		return err
	}
	out, err := s.cli("ingest", "--node", "unix://"+m.sock, path)
	if err != nil {
		return err
	}
	g := ingestedRE.FindStringSubmatch(out)
	want := []string{strconv.Itoa(len(next)), strconv.Itoa(nNew), strconv.Itoa(nChanged), strconv.Itoa(nUnchanged)}
	if g == nil || !slices.Equal(g[1:5], want) {
		return fmt.Errorf("%s: sent %v (records, new, changed, unchanged), the node says %q", m.code, want, out)
	}
	for id, r := range next {
		m.live[id] = r
	}
	v, _ := strconv.ParseUint(g[5], 10, 64)
	if err := m.ack(v); err != nil {
		return err
	}
	m.last = path
	s.counts.streams.Add(1)
	s.counts.recNew.Add(int64(nNew))
	s.counts.recChanged.Add(int64(nChanged))
	s.counts.recUnchanged.Add(int64(nUnchanged))
	return nil
}

func soakID(member string, n int) string { return fmt.Sprintf("%s-SOAK-%06d", member, n) }

func randomRecord(rng *rand.Rand) soakRecord {
	r := soakRecord{
		metric:  soakMetrics[rng.IntN(len(soakMetrics))],
		date:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(274)).Format(time.DateOnly),
		offence: soakOffences[rng.IntN(len(soakOffences))],
		channel: soakChannels[rng.IntN(len(soakChannels))],
		qty:     uint64(1 + rng.IntN(5)),
	}
	if r.metric == "victims_identified" {
		r.age = soakAges[rng.IntN(len(soakAges))]
	}
	return r
}

// writeStream writes records as CSV or JSON Lines, by path's extension.
func writeStream(path, member string, recs map[int]soakRecord) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	jsonl := strings.HasSuffix(path, ".jsonl")
	if !jsonl {
		fmt.Fprintln(w, "record_id,metric,date,offence,channel,victim_age,quantity")
	}
	for id, r := range recs {
		if !jsonl {
			fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%d\n", soakID(member, id), r.metric, r.date, r.offence, r.channel, r.age, r.qty)
			continue
		}
		fmt.Fprintf(w, `{"record_id":%q,"metric":%q,"date":%q`, soakID(member, id), r.metric, r.date)
		for _, kv := range [][2]string{{"offence", r.offence}, {"channel", r.channel}, {"victim_age", r.age}} {
			if kv[1] != "" {
				fmt.Fprintf(w, `,%q:%q`, kv[0], kv[1])
			}
		}
		fmt.Fprintf(w, `,"quantity":%d}`+"\n", r.qty)
	}
	return errors.Join(w.Flush(), f.Close())
}

// startRollup runs view v with `fedreport rollup` as the operator and
// returns the rollup it printed. A rate-limited rollup is retried: the
// limit is the product's, the pace the test's.
func (s *soak) startRollup(ctx context.Context, v int) (*fedreportv1.Rollup, error) {
	view := soakViews[v]
	args := append([]string{"rollup"}, s.opArgs...)
	args = append(args, "--from", view.from, "--to", view.to, "-o", "json")
	if len(view.metrics) > 0 {
		args = append(args, "--metrics", strings.Join(view.metrics, ","))
	}
	if len(view.by) > 0 {
		args = append(args, "--by", strings.Join(view.by, ","))
	}
	floors := make([]uint64, len(s.members))
	for i, m := range s.members {
		floors[i] = m.floor()
	}
	for {
		out, err := s.cli(args...)
		if err != nil && strings.Contains(out, "rate limit") {
			s.counts.rateLimited.Add(1)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		var resp fedreportv1.StartRollupResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			return nil, fmt.Errorf("rollup -o json: %w\n%s", err, out)
		}
		r := resp.GetRollup()
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.started[r.GetId()] = started{digest: sha256.Sum256(b), n: len(s.ids), rollup: r}
		s.ids = append(s.ids, r.GetId())
		s.mu.Unlock()
		s.counts.rollups.Add(1)
		s.views.Store(r.GetId(), v)
		// A later rollup sees at least the versions acknowledged now.
		defer func() {
			for i, m := range s.members {
				m.prune(floors[i])
			}
		}()
		return r, nil
	}
}

// rollup is startRollup for the final checks.
func (s *soak) rollup(ctx context.Context, v int) *fedreportv1.Rollup {
	r, err := s.startRollup(ctx, v)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// check compares a rollup with the test's model: it is complete, every
// member answered, each member's cells and the totals equal what the test
// sent at the data version the member answered at (or, where a member
// withheld a cell, the true value lies within the bounds).
func (s *soak) check(r *fedreportv1.Rollup) error {
	vi, ok := s.views.Load(r.GetId())
	if !ok {
		return fmt.Errorf("rollup %s: not started by the test", r.GetId())
	}
	v := vi.(int)
	if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		return fmt.Errorf("rollup %s: %v %q, missing %v", r.GetId(), r.GetState(), r.GetFailureReason(), r.GetMissingMembers())
	}
	if len(r.GetMembers()) != len(s.members) {
		return fmt.Errorf("rollup %s: %d member results, want %d", r.GetId(), len(r.GetMembers()), len(s.members))
	}
	byMember := slices.Contains(soakViews[v].by, "member")
	ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Minute)
	defer cancel()
	totals := expected{}
	for _, mr := range r.GetMembers() {
		i := slices.IndexFunc(s.members, func(m *soakMember) bool { return m.code == mr.GetMember() })
		if i < 0 || mr.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK {
			return fmt.Errorf("rollup %s: member %s %v %q", r.GetId(), mr.GetMember(), mr.GetStatus(), mr.GetReason())
		}
		e, err := s.members[i].at(ctx, mr.GetDataVersion())
		if err != nil {
			return fmt.Errorf("rollup %s: %w", r.GetId(), err)
		}
		want := expected{}
		for k, n := range e {
			if k.view == v {
				want[k] = n
				if byMember {
					k.member = mr.GetMember()
				}
				totals[k] += n
			}
		}
		if err := s.compare(v, mr.GetCells(), want); err != nil {
			return fmt.Errorf("rollup %s, member %s at data version %d: %w", r.GetId(), mr.GetMember(), mr.GetDataVersion(), err)
		}
	}
	if err := s.compare(v, r.GetTotals(), totals); err != nil {
		return fmt.Errorf("rollup %s totals: %w", r.GetId(), err)
	}
	return nil
}

func (s *soak) compare(v int, cells []*fedreportv1.Cell, want expected) error {
	got := map[cellKey]*fedreportv1.Cell{}
	for _, c := range cells {
		k := cellKey{view: v, member: c.GetMember(), metric: soakMetricOf[c.GetMetric()], month: c.GetMonth(), offence: c.GetOffence(), channel: c.GetChannel()}
		if got[k] != nil {
			return fmt.Errorf("cell %+v twice", k)
		}
		got[k] = c
	}
	var problems []string
	for k, c := range got {
		n := want[k]
		switch {
		case c.GetSuppressedCells() == 0 && c.GetCount() == n:
			s.counts.exactCells.Add(1)
		// A withheld cell, or one held at an earlier release's value while
		// a change too small to publish is pending: its bounds hold the
		// value sent.
		case c.GetSuppressedCells() > 0 && c.GetLowerBound() <= n && n <= c.GetUpperBound():
			s.counts.boundedCells.Add(1)
		default:
			problems = append(problems, fmt.Sprintf("%+v: got count %d (%d suppressed, %d..%d), sent %d",
				k, c.GetCount(), c.GetSuppressedCells(), c.GetLowerBound(), c.GetUpperBound(), n))
		}
	}
	for k, n := range want {
		if got[k] == nil && n > 0 {
			problems = append(problems, fmt.Sprintf("%+v: missing, sent %d", k, n))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("%d cells differ from the records sent: %s", len(problems), strings.Join(problems[:min(5, len(problems))], "; "))
	}
	return nil
}

// read lists the newest rollups and reads one stored rollup back over the
// analyst's long-lived connection: both must be what StartRollup returned.
func (s *soak) read(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Not bound to the phase: a call cut off by its end would look like a failure.
	cctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	known := len(s.ids)
	s.mu.Unlock()
	// The list in the FULL view, one rollup in either view.
	full := fedreportv1.RollupView_ROLLUP_VIEW_FULL
	list, err := s.client.ListRollups(cctx, &fedreportv1.ListRollupsRequest{PageSize: 20, View: full})
	if err != nil {
		return fmt.Errorf("ListRollups: %w", err)
	}
	s.counts.listRollups.Add(1)
	for i, r := range list.GetRollups() {
		if i > 0 && r.GetId() >= list.GetRollups()[i-1].GetId() {
			return fmt.Errorf("ListRollups: %s after %s, want newest first", r.GetId(), list.GetRollups()[i-1].GetId())
		}
		if err := s.sameAsStarted(r, known, full); err != nil {
			return fmt.Errorf("ListRollups: %w", err)
		}
	}
	if known == 0 {
		return nil
	}
	s.mu.Lock()
	id := s.ids[rand.IntN(known)]
	s.mu.Unlock()
	view := fedreportv1.RollupView(rand.IntN(3)) // unspecified (BASIC), BASIC or FULL
	got, err := s.client.GetRollup(cctx, &fedreportv1.GetRollupRequest{Id: id, View: view})
	if err != nil {
		return fmt.Errorf("GetRollup %s: %w", id, err)
	}
	s.counts.getRollups.Add(1)
	return s.sameAsStarted(got.GetRollup(), known, view)
}

// started is a rollup as StartRollup returned it.
type started struct {
	digest [32]byte // of its deterministic encoding
	n      int      // its index in soak.ids
	rollup *fedreportv1.Rollup
}

// sameAsStarted checks a stored rollup against what StartRollup returned,
// if the test knew that before it asked (known: the first known of
// soak.ids). A rollup the server read before it finished was RUNNING then.
// In the BASIC view (any but FULL) it is checked against what StartRollup
// returned without the member results.
func (s *soak) sameAsStarted(r *fedreportv1.Rollup, known int, view fedreportv1.RollupView) error {
	det := proto.MarshalOptions{Deterministic: true}
	b, err := det.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	want, ok := s.started[r.GetId()]
	s.mu.Unlock()
	if !ok || want.n >= known {
		return nil
	}
	digest := want.digest
	if view != fedreportv1.RollupView_ROLLUP_VIEW_FULL {
		if len(r.GetMembers()) != 0 {
			return fmt.Errorf("rollup %s in view %v has %d member results, want none", r.GetId(), view, len(r.GetMembers()))
		}
		basic := proto.CloneOf(want.rollup)
		basic.Members = nil
		wb, err := det.Marshal(basic)
		if err != nil {
			return err
		}
		digest = sha256.Sum256(wb)
	}
	if sha256.Sum256(b) != digest {
		return fmt.Errorf("stored rollup %s differs from the one StartRollup returned:\nstored: %v\nreturned: %v", r.GetId(), r, want.rollup)
	}
	return nil
}

// cliRead runs the read verbs as new processes: each is a new mTLS
// connection that the servers must forget again.
func (s *soak) cliRead(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.mu.Lock()
	var id string
	if len(s.ids) > 0 {
		id = s.ids[len(s.ids)-1]
	}
	s.mu.Unlock()
	verbs := [][]string{append([]string{"rollups", "--limit", "10"}, s.anArgs...), append([]string{"members"}, s.anArgs...)}
	if id != "" {
		verbs = append(verbs, append([]string{"rollups", "show", id}, s.anArgs...))
	}
	for _, args := range verbs {
		if _, err := s.cli(args...); err != nil {
			return err
		}
		s.counts.cliReads.Add(1)
	}
	m := s.members[rand.IntN(len(s.members))]
	out, err := s.cli("audit", "--node", "unix://"+m.sock, "--since", time.Now().UTC().Format(time.DateOnly))
	if err != nil {
		return err
	}
	if !strings.Contains(out, "spiffe://isa/coordinator/main") && s.counts.rollups.Load() > 0 {
		return fmt.Errorf("audit of %s lists no answer to the coordinator after %d rollups:\n%s", m.code, s.counts.rollups.Load(), out)
	}
	s.counts.audits.Add(1)
	return nil
}

// soakProc is a process the sampler scrapes.
type soakProc struct {
	name, metrics string
	pid           int
}

func (s *soak) procs() []soakProc {
	var ps []soakProc
	for _, m := range s.members {
		ps = append(ps, soakProc{"node " + m.code, m.metrics, m.proc.cmd.Process.Pid})
	}
	return append(ps, soakProc{"coordinator", s.coordMx, s.coord.cmd.Process.Pid})
}

// scrape reads one process's metrics and /proc status.
func scrape(ctx context.Context, p soakProc) (soakSample, error) {
	smp := soakSample{proc: p.name}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/metrics", nil)
	if err != nil {
		return smp, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return smp, fmt.Errorf("scrape %s: %w", p.name, err)
	}
	defer resp.Body.Close()
	want := map[string]*float64{
		"process_resident_memory_bytes": &smp.rss, "go_memstats_heap_inuse_bytes": &smp.heap,
		"go_goroutines": &smp.goroutines, "process_open_fds": &smp.fds,
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		switch name {
		case node.DisclosureAppendMetric + "_count":
			smp.appends, err = strconv.ParseFloat(value, 64)
		case node.DisclosureAppendMetric + "_sum":
			smp.appendSeconds, err = strconv.ParseFloat(value, 64)
		}
		if err != nil {
			return smp, fmt.Errorf("scrape %s: %s: %w", p.name, name, err)
		}
		if dst := want[name]; ok && dst != nil {
			if *dst, err = strconv.ParseFloat(value, 64); err != nil {
				return smp, fmt.Errorf("scrape %s: %s: %w", p.name, name, err)
			}
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return smp, fmt.Errorf("scrape %s: %w", p.name, err)
	}
	if found != len(want) {
		return smp, fmt.Errorf("scrape %s: found %d of the %d metrics sampled", p.name, found, len(want))
	}
	// RssAnon is the process's own memory; VmRSS also counts the pages of
	// its bbolt file that reads touched through the mmap, which grow with
	// the file (the disclosure log and the rollup history only grow) and
	// which the kernel can drop.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return smp, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return smp, fmt.Errorf("%s RssAnon %q: %w", p.name, v, err)
			}
			smp.anon = kb * 1024
		}
	}
	return smp, nil
}

func (s *soak) startSampler(ctx context.Context) {
	ctx, s.stopSamples = context.WithCancel(ctx)
	s.sampled = make(chan struct{})
	go func() {
		defer close(s.sampled)
		tick := time.NewTicker(s.p.sampleEvery)
		defer tick.Stop()
		for {
			for _, p := range s.procs() {
				smp, err := scrape(ctx, p)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					s.t.Errorf("sample: %v", err)
					continue
				}
				smp.at, smp.phase = time.Since(s.start), int(s.phase.Load())
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func (s *soak) stopSampler() {
	s.stopOnce.Do(func() {
		s.stopSamples()
		<-s.sampled
	})
}

// quiet returns each process's goroutines and open files with no load: the
// minimum over a few samples a second apart, so that a connection still
// closing does not count, while a leak, which never goes away, does.
func (s *soak) quiet(ctx context.Context) map[string]soakSample {
	q := map[string]soakSample{}
	for i := range s.p.quietSamples {
		if i > 0 {
			time.Sleep(time.Second) // the processes settle; nothing to wait on
		}
		for _, p := range s.procs() {
			smp, err := scrape(ctx, p)
			if err != nil {
				s.t.Fatal(err)
			}
			if old, ok := q[p.name]; ok {
				smp.goroutines, smp.fds = min(old.goroutines, smp.goroutines), min(old.fds, smp.fds)
			}
			q[p.name] = smp
		}
	}
	return q
}

// stopAndVerify stops every process with SIGTERM and checks each node's
// file offline: counters equal the records, the disclosure chain is
// intact, and it holds the records and disclosures the test expects.
func (s *soak) stopAndVerify() {
	t := s.t
	all := []*proc{s.coord}
	for _, m := range s.members {
		all = append(all, m.proc)
	}
	for _, p := range all {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range all {
		if err := p.wait(t, time.Minute); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.output())
		}
	}
	rollups := s.counts.rollups.Load()
	for _, m := range s.members {
		out, err := s.cli("verify", "--data", m.db)
		if err != nil {
			t.Errorf("verify %s: %v", m.code, err)
			continue
		}
		want := fmt.Sprintf("  %d records, ", len(m.live))
		if !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf(" %d disclosures", rollups)) {
			t.Errorf("verify %s: got\n%s\nwant %d records (the test's) and %d disclosures (one per rollup)", m.code, out, len(m.live), rollups)
		}
	}
}

// flatness is the verdict on one process.
type flatness struct {
	proc            string
	q2Heap, q4Heap  float64
	q2Anon, q4Anon  float64
	baseG, finalG   float64
	baseFD, finalFD float64
	problems        []string
}

// judge checks that goroutines and open files came back to the baseline
// after the load, and that heap and anonymous RSS did not grow from the
// second quarter of the measured run to the last. The second quarter, not
// the first, so that what fills once (caches, pools, the member's counter
// cells) is in both.
func (s *soak) judge(baseline, final map[string]soakSample, mainStart time.Duration) []flatness {
	var verdict []flatness
	s.mu.Lock()
	samples := slices.Clone(s.samples)
	s.mu.Unlock()
	for _, p := range s.procs() {
		f := flatness{proc: p.name, baseG: baseline[p.name].goroutines, finalG: final[p.name].goroutines,
			baseFD: baseline[p.name].fds, finalFD: final[p.name].fds}
		var q2, q4 []soakSample
		for _, smp := range samples {
			if smp.proc != p.name || smp.phase != 1 {
				continue
			}
			switch quarter := int(4 * (smp.at - mainStart) / s.p.main); quarter {
			case 1:
				q2 = append(q2, smp)
			case 3:
				q4 = append(q4, smp)
			}
		}
		if len(q2) == 0 || len(q4) == 0 {
			f.problems = append(f.problems, fmt.Sprintf("too few samples (%d, %d) to judge", len(q2), len(q4)))
			verdict = append(verdict, f)
			continue
		}
		mean := func(ss []soakSample, v func(soakSample) float64) float64 {
			var sum float64
			for _, smp := range ss {
				sum += v(smp)
			}
			return sum / float64(len(ss))
		}
		f.q2Heap, f.q4Heap = mean(q2, func(s soakSample) float64 { return s.heap }), mean(q4, func(s soakSample) float64 { return s.heap })
		f.q2Anon, f.q4Anon = mean(q2, func(s soakSample) float64 { return s.anon }), mean(q4, func(s soakSample) float64 { return s.anon })
		if f.q4Heap > f.q2Heap*(1+s.p.heapRel)+s.p.heapAbs {
			f.problems = append(f.problems, fmt.Sprintf("heap grew: mean %.1f MB in the second quarter, %.1f MB in the last", f.q2Heap/1e6, f.q4Heap/1e6))
		}
		if f.q4Anon > f.q2Anon*(1+s.p.rssRel)+s.p.rssAbs {
			f.problems = append(f.problems, fmt.Sprintf("anonymous RSS grew: mean %.1f MB in the second quarter, %.1f MB in the last", f.q2Anon/1e6, f.q4Anon/1e6))
		}
		if f.finalG > f.baseG+max(5, f.baseG/10) {
			f.problems = append(f.problems, fmt.Sprintf("goroutines: %.0f at rest after the load, %.0f after the warm-up", f.finalG, f.baseG))
		}
		if f.finalFD > f.baseFD+5 {
			f.problems = append(f.problems, fmt.Sprintf("open files: %.0f at rest after the load, %.0f after the warm-up", f.finalFD, f.baseFD))
		}
		for _, pr := range f.problems {
			s.t.Errorf("%s: %s", p.name, pr)
		}
		verdict = append(verdict, f)
	}
	return verdict
}

// report logs the operations, the verdict and the samples (thinned in the
// test log; all of them in -soak-report).
func (s *soak) report(verdict []flatness) {
	s.stopSampler()
	c := &s.counts
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %s (%s warm-up + %s measured), 3 nodes + coordinator, samples every %s\n",
		(s.p.warmUp + s.p.main).Round(time.Second), s.p.warmUp, s.p.main, s.p.sampleEvery)
	fmt.Fprintf(&b, "ingest: %d streams (%d new, %d changed, %d unchanged records), %d idempotent resends, %d retractions (%d records)\n",
		c.streams.Load(), c.recNew.Load(), c.recChanged.Load(), c.recUnchanged.Load(), c.resends.Load(), c.retracts.Load(), c.recRetracted.Load())
	checked := "all COMPLETE and equal to the records sent"
	if s.t.Failed() {
		checked = "FAILED, see the errors above; checked"
	}
	fmt.Fprintf(&b, "rollups: %d, %s (%d cells exact, %d within a suppressing member's bounds); %d rate-limited tries\n",
		c.rollups.Load(), checked, c.exactCells.Load(), c.boundedCells.Load(), c.rateLimited.Load())
	fmt.Fprintf(&b, "reads: %d GetRollup, %d ListRollups, %d CLI reads (rollups, rollups show, members), %d audits\n",
		c.getRollups.Load(), c.listRollups.Load(), c.cliReads.Load(), c.audits.Load())
	s.mu.Lock()
	samples := slices.Clone(s.samples)
	s.mu.Unlock()
	for _, m := range s.members {
		// The node's last scrape: its metrics time every disclosure.
		var last soakSample
		for _, smp := range samples {
			if smp.proc == "node "+m.code {
				last = smp
			}
		}
		if last.appends == 0 && c.rollups.Load() > 0 {
			s.t.Errorf("node %s: %s counts no append after %d rollups", m.code, node.DisclosureAppendMetric, c.rollups.Load())
		}
		fmt.Fprintf(&b, "node %s: %d records at the end, k=%d; %.0f disclosures appended, %.2f ms each on average\n",
			m.code, len(m.live), m.k, last.appends, 1e3*last.appendSeconds/max(1, last.appends))
	}

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nprocess\theap MB q2→q4\tanon RSS MB q2→q4\tgoroutines at rest\topen fds at rest\tverdict")
	for _, f := range verdict {
		v := "flat"
		if len(f.problems) > 0 {
			v = strings.Join(f.problems, "; ")
		}
		fmt.Fprintf(tw, "%s\t%.1f → %.1f\t%.1f → %.1f\t%.0f → %.0f\t%.0f → %.0f\t%s\n",
			f.proc, f.q2Heap/1e6, f.q4Heap/1e6, f.q2Anon/1e6, f.q4Anon/1e6, f.baseG, f.finalG, f.baseFD, f.finalFD, v)
	}
	tw.Flush()

	table := func(w io.Writer, every int) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "t\tprocess\tRSS MB\tanon MB\theap MB\tgoroutines\tfds\t")
		n := len(s.procs())
		for i, smp := range samples {
			if round := i / n; round%every != 0 && i < len(samples)-n {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t\n",
				smp.at.Round(time.Second), smp.proc, smp.rss/1e6, smp.anon/1e6, smp.heap/1e6, smp.goroutines, smp.fds)
		}
		tw.Flush()
	}
	rounds := len(samples) / max(1, len(s.procs()))
	summary := b.String()
	var thin strings.Builder
	table(&thin, max(1, rounds/12))
	s.t.Logf("%s\nsamples (every %s; -soak-report has all %d):\n%s", summary, s.p.sampleEvery*time.Duration(max(1, rounds/12)), len(samples), thin.String())
	if *soakReport == "" {
		return
	}
	var full strings.Builder
	full.WriteString(summary)
	full.WriteString("\nsamples:\n")
	table(&full, 1)
	if err := os.WriteFile(*soakReport, []byte(full.String()), 0o644); err != nil {
		s.t.Error(err)
	}
}
