package robustness

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The flood tests are the large versions of the hardening tests of issue 20
// (node/flood_test.go, cmd/fedreport/command_node_conns_test.go,
// cmd/fedreport/command_rollup_pace_test.go, the echo tests), run against
// real fedreport processes. go test ./... runs them at a size that fits CI;
// the documented runs (tests/robustness/README.md) are
//
//	go test ./tests/robustness -run TestFlood -timeout 20m -v -args -flood
var floodFull = flag.Bool("flood", false, "run the TestFlood tests at full size (a 10 s denied 4 MiB flood, 10,500 idle connections, 10 operators × 20 rollups); without it they run at a size that fits CI")

var (
	floodOperators = flag.Int("flood-operators", 0, "TestFloodOperatorsRollups: this many operators instead of the size's")
	floodEach      = flag.Int("flood-rollups", 0, "TestFloodOperatorsRollups: rollups each operator starts, instead of the size's")
)

// floodSize returns full when -flood is set, else small, and says which.
func floodSize[T any](t *testing.T, small, full T) T {
	t.Helper()
	if *floodFull {
		t.Logf("full size (-flood): %+v", full)
		return full
	}
	t.Logf("CI size: %+v; the full size runs with -args -flood (tests/robustness/README.md)", small)
	return small
}

// floodNode is a real `fedreport node` process with metrics.
type floodNode struct {
	p             *proc
	addr, metrics string
	sock          string
}

func startFloodNode(t *testing.T, f federation, member string, extra ...string) *floodNode {
	t.Helper()
	dir := t.TempDir()
	cert, key := f.files(identity.Node("isa", member))
	n := &floodNode{sock: filepath.Join(dir, member+".sock")}
	n.p = start(t, append([]string{"node", "--member", member, "--data", filepath.Join(dir, member+".db"),
		"--listen", "127.0.0.1:0", "--admin-socket", n.sock, "--metrics-listen", "127.0.0.1:0",
		"--cacert", f.ca, "--cert", cert, "--key", key, "--min-cell-count", "3"}, extra...)...)
	got := waitLogs(t, n.p, 30*time.Second, metricsRE, nodeServingRE)
	n.metrics, n.addr = got[0], got[1]
	return n
}

func (n *floodNode) pid() int { return n.p.cmd.Process.Pid }

// procStatus returns a /proc/<pid>/status field in bytes (for kB fields).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// openFDs counts the open files of pid.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// series returns the value of one series (name and labels as the text
// format writes them) of the /metrics at addr, or -1 when it is absent.
func series(ctx context.Context, addr, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return -1, sc.Err()
}

// sampler reads a process's VmRSS and open files every interval until stop.
type sampler struct {
	pid              int
	mu               sync.Mutex
	peakRSS, lastRSS int64
	peakFDs, lastFDs int
	n                int
	err              error
	stop             chan struct{}
	done             chan struct{}
}

func sample(pid int, every time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.once()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				s.once()
				return
			case <-tick.C:
				s.once()
			}
		}
	}()
	return s
}

func (s *sampler) once() {
	rss, err := procStatus(s.pid, "VmRSS")
	fds, ferr := openFDs(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || ferr != nil {
		if s.err == nil {
			s.err = fmt.Errorf("sampling process %d: %v %v", s.pid, err, ferr)
		}
		return
	}
	s.n++
	s.lastRSS, s.lastFDs = rss, fds
	s.peakRSS, s.peakFDs = max(s.peakRSS, rss), max(s.peakFDs, fds)
}

func (s *sampler) end() {
	close(s.stop)
	<-s.done
}

// --- 1. A denied 4 MiB Aggregate flood ---------------------------------

// h2Conn is a bare HTTP/2 client over mTLS that sends gRPC requests from
// one reused buffer and keeps sending a stream's body after the server
// refused it, as a flooding client would. It follows the connection's flow
// control; a stream's window (4 MiB, static on fedreport's servers) holds a
// whole request.
type h2Conn struct {
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex // protects writes to fr, enc, hbuf and next
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // the next stream id

	mu      sync.Mutex // protects the fields below
	cond    *sync.Cond
	ready   bool
	window  int64
	streams map[uint32]chan string // open streams: receives their grpc-status, or "RST <code>"
	err     error
}

func dialH2(addr string, cfg *tls.Config) (*h2Conn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{conn: conn, fr: http2.NewFramer(conn, conn), window: 65535, next: 1, streams: map[uint32]chan string{}}
	c.cond = sync.NewCond(&c.mu)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(); err != nil {
		conn.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *h2Conn) read() {
	finish := func(id uint32, st string) {
		if ch, ok := c.streams[id]; ok {
			ch <- st
			delete(c.streams, id)
		}
	}
	for {
		frame, err := c.fr.ReadFrame()
		c.mu.Lock()
		if err != nil {
			c.err = err
			for id := range c.streams {
				finish(id, "conn: "+err.Error())
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		switch fr := frame.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				c.ready = true
				c.wmu.Lock()
				_ = c.fr.WriteSettingsAck()
				c.wmu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			if fr.StreamID == 0 {
				c.window += int64(fr.Increment)
			}
		case *http2.PingFrame:
			if !fr.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, fr.Data)
				c.wmu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			for _, h := range fr.RegularFields() {
				if h.Name == "grpc-status" {
					finish(fr.StreamID, h.Value)
				}
			}
		case *http2.RSTStreamFrame:
			finish(fr.StreamID, "RST "+fr.ErrCode.String())
		case *http2.GoAwayFrame:
			c.err = fmt.Errorf("GOAWAY %v", fr.ErrCode)
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// take waits until the connection may send n bytes and counts them sent.
func (c *h2Conn) take(n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for (!c.ready || c.window < n) && c.err == nil {
		c.cond.Wait()
	}
	if c.err != nil {
		return c.err
	}
	c.window -= n
	return nil
}

// send sends one request of method whose message is prefix followed by
// body bytes of filler, and returns the channel its status will come on.
func (c *h2Conn) send(method string, prefix []byte, body int, filler []byte) (<-chan string, error) {
	if err := c.take(0); err != nil { // the server's SETTINGS first
		return nil, err
	}
	done := make(chan string, 1)
	c.wmu.Lock()
	id := c.next
	c.next += 2
	c.mu.Lock()
	c.streams[id] = done
	c.mu.Unlock()
	c.hbuf.Reset()
	for _, h := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method}, {":authority", "node"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	n := len(prefix) + body
	msg := append([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, prefix...)
	chunks := [][]byte{msg}
	for left := body; left > 0; left -= len(filler) {
		chunks = append(chunks, filler[:min(left, len(filler))])
	}
	for i, ch := range chunks {
		if err := c.take(int64(len(ch))); err != nil {
			return nil, err
		}
		c.wmu.Lock()
		err := c.fr.WriteData(id, i == len(chunks)-1, ch)
		c.wmu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return done, nil
}

type deniedFlood struct {
	Conns, Streams int
	For            time.Duration
	MaxRSS         int64 // bytes
}

// TestFloodDeniedAggregate has an analyst, whom a node refuses every call
// but health and reflection, send 4 MiB Aggregate requests to a `fedreport
// node` process over several connections, each with as many streams as the
// node lets one connection have (100), for a while; every stream keeps
// sending its whole body after the refusal. The node's VmRSS, sampled every
// 50 ms, stays under the bound throughout, every request is refused
// PERMISSION_DENIED, and the node serves its coordinator afterwards.
func TestFloodDeniedAggregate(t *testing.T) {
	sz := floodSize(t,
		deniedFlood{Conns: 2, Streams: 10, For: 2 * time.Second, MaxRSS: 100 << 20},
		deniedFlood{Conns: 3, Streams: 100, For: 10 * time.Second, MaxRSS: 100 << 20})
	f := newFederation(t, identity.Node("isa", "FR"), identity.Analyst("isa", "eve"), identity.Coordinator("isa", "main"))
	n := startFloodNode(t, f, "FR")
	cfg := mtls.ClientConfig(f.source(t, identity.Analyst("isa", "eve")), mtls.ExpectRole("isa", identity.RoleNode))

	const size = 4<<20 - 64 // the node's largest message (IngestRecords'), which a stream's window holds whole
	body := size - 5        // one rollup_id field: its tag, a 4-byte length, the id
	prefix := protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.BytesType), uint64(body))
	filler := bytes.Repeat([]byte("r"), 16<<10)

	time.Sleep(time.Second) // let the node settle after its start
	before, err := procStatus(n.pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	s := sample(n.pid(), 50*time.Millisecond)
	var sent, denied, reset, connErrs atomic.Int64
	other := sync.Map{} // unexpected status → count
	ctx, cancel := context.WithTimeout(t.Context(), sz.For)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range sz.Conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := dialH2(n.addr, cfg)
				if err != nil {
					connErrs.Add(1)
					t.Logf("dial: %v", err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var sw sync.WaitGroup
				for range sz.Streams {
					sw.Go(func() {
						for ctx.Err() == nil {
							done, err := c.send(fedreportv1.AggregationService_Aggregate_FullMethodName, prefix, body, filler)
							if err != nil {
								return
							}
							sent.Add(1)
							var st string
							select {
							case st = <-done:
							case <-time.After(30 * time.Second):
								st = "no answer in 30s"
							}
							switch {
							case st == "7": // PERMISSION_DENIED
								denied.Add(1)
							case strings.HasPrefix(st, "RST "):
								reset.Add(1)
							default:
								v, _ := other.LoadOrStore(st, new(atomic.Int64))
								v.(*atomic.Int64).Add(1)
							}
						}
					})
				}
				sw.Wait()
				c.mu.Lock()
				if c.err != nil && ctx.Err() == nil {
					connErrs.Add(1)
					t.Logf("connection ended mid-flood: %v", c.err)
				}
				c.mu.Unlock()
				c.conn.Close()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(time.Second)
	s.end()
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Logf("%d conns × %d streams for %v: %d requests of 4 MiB sent (%.1f GiB), %d PERMISSION_DENIED, %d reset, %d connection errors",
		sz.Conns, sz.Streams, elapsed.Round(time.Millisecond), sent.Load(), float64(sent.Load())*size/(1<<30), denied.Load(), reset.Load(), connErrs.Load())
	t.Logf("node VmRSS: %.1f MB before, peak %.1f MB over %d samples, %.1f MB a second after (bound %d MB)",
		float64(before)/1e6, float64(s.peakRSS)/1e6, s.n, float64(s.lastRSS)/1e6, sz.MaxRSS>>20)
	other.Range(func(k, v any) bool {
		t.Errorf("%d requests ended with %q, want PERMISSION_DENIED (7)", v.(*atomic.Int64).Load(), k)
		return true
	})
	if sent.Load() == 0 || denied.Load() == 0 {
		t.Errorf("the flood sent %d requests, %d denied: nothing was measured", sent.Load(), denied.Load())
	}
	if s.peakRSS > sz.MaxRSS {
		t.Errorf("the node's VmRSS peaked at %.1f MB during the flood, want under %d MiB", float64(s.peakRSS)/1e6, sz.MaxRSS>>20)
	}
	// The node still answers its coordinator.
	conn := dialNode(t, f, n.addr, identity.Coordinator("isa", "main"))
	if _, err := fedreportv1.NewAggregationServiceClient(conn).Aggregate(callCtx(t), &fedreportv1.AggregateRequest{
		RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}); err != nil {
		t.Errorf("Aggregate as the coordinator after the flood: %v", err)
	}
}

// dialNode connects to a node as id.
func dialNode(t *testing.T, f federation, addr string, id identity.ID) *grpc.ClientConn {
	t.Helper()
	cfg := mtls.ClientConfig(f.source(t, id), mtls.ExpectRole("isa", identity.RoleNode))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// --- 2. A flood of idle connections ------------------------------------

type connFlood struct {
	Conns       int           // idle TCP connections opened
	FromClient  int           // of them from 127.0.0.1, the connected client's address (the per-source cap)
	PerSource   int           // the others, from this many per address 127.1.x.y
	MaxConns    int           // --max-connections
	MaxPerSrc   int           // --max-connections-per-source
	Hold        time.Duration // how long the flood is held open
	MaxHealthMS int64         // a health check of the connected client takes at most this long
}

// TestFloodIdleConnections connects a client to a `fedreport node`
// process, then opens idle TCP connections to its mTLS listener, first from
// the client's address, then from many loopback addresses, and holds them.
// Throughout, the node stays up, its open files stay within its
// --max-connections (plus the files it had before), the connected client's
// health check keeps succeeding quickly, and the refused connections are
// counted in /metrics by cap. Sized to the open-file limit of this process.
func TestFloodIdleConnections(t *testing.T) {
	sz := floodSize(t,
		connFlood{Conns: 400, FromClient: 40, PerSource: 10, MaxConns: 128, MaxPerSrc: 16, Hold: 3 * time.Second, MaxHealthMS: 1000},
		connFlood{Conns: 10500, FromClient: 200, PerSource: 50, MaxConns: 1024, MaxPerSrc: 64, Hold: 15 * time.Second, MaxHealthMS: 1000})
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	const reserve = 512 // this process's other files: the build, the node's pipes, clients
	if int(lim.Cur) < sz.Conns+reserve {
		n := int(lim.Cur) - reserve
		if n < 2*sz.MaxConns {
			t.Skipf("the open-file limit is %d: %d connections need %d; raise it (ulimit -n) to run this test", lim.Cur, sz.Conns, sz.Conns+reserve)
		}
		t.Logf("the open-file limit is %d: flooding with %d connections instead of %d", lim.Cur, n, sz.Conns)
		sz.Conns = n
	}
	t.Logf("open-file limit of the test: %d (hard %d)", lim.Cur, lim.Max)

	f := newFederation(t, identity.Node("isa", "FR"), identity.Coordinator("isa", "main"))
	n := startFloodNode(t, f, "FR", "--max-connections", strconv.Itoa(sz.MaxConns), "--max-connections-per-source", strconv.Itoa(sz.MaxPerSrc))
	if l, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", n.pid())); err == nil {
		for line := range strings.Lines(string(l)) {
			if strings.HasPrefix(line, "Max open files") {
				t.Logf("node: %s", strings.Join(strings.Fields(line), " "))
			}
		}
	}
	health := healthpb.NewHealthClient(dialNode(t, f, n.addr, identity.Coordinator("isa", "main")))
	check := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return time.Since(start), err
	}
	if _, err := check(); err != nil {
		t.Fatalf("health check before the flood: %v", err)
	}
	refused := func(cap string) float64 {
		v, err := series(t.Context(), n.metrics, `fedreport_node_grpc_server_connections_refused_total{cap="`+cap+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if a, b := refused("source"), refused("listener"); a != 0 || b != 0 {
		t.Fatalf("refused connections before the flood: source %v, listener %v", a, b)
	}
	time.Sleep(500 * time.Millisecond)
	baseFDs, err := openFDs(n.pid())
	if err != nil {
		t.Fatal(err)
	}
	baseRSS, _ := procStatus(n.pid(), "VmRSS")
	s := sample(n.pid(), 100*time.Millisecond)

	// The connected client checks its health every 100 ms for the whole flood.
	var checks, failed atomic.Int64
	var worst atomic.Int64
	stopChecks := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		for {
			d, err := check()
			checks.Add(1)
			if err != nil {
				if failed.Add(1) <= 3 {
					t.Errorf("health check of the connected client during the flood: %v", err)
				}
			}
			if ms := d.Milliseconds(); ms > worst.Load() {
				worst.Store(ms)
			}
			select {
			case <-stopChecks:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	var mu sync.Mutex
	var conns []net.Conn
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	flood := func(srcs []string) {
		jobs := make(chan string)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for src := range jobs {
					d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
					c, err := d.DialContext(t.Context(), "tcp", n.addr)
					if err != nil {
						dialErrs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			})
		}
		for _, s := range srcs {
			jobs <- s
		}
		close(jobs)
		wg.Wait()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	start := time.Now()
	flood(slicesRepeat("127.0.0.1", sz.FromClient))
	var srcs []string
	for i := range sz.Conns - sz.FromClient {
		k := i / sz.PerSource
		srcs = append(srcs, fmt.Sprintf("127.1.%d.%d", k/250, 1+k%250))
	}
	flood(srcs)
	dialTime := time.Since(start)
	time.Sleep(sz.Hold)
	s.mu.Lock()
	afterHold := s.lastFDs
	s.mu.Unlock()
	close(stopChecks)
	<-checked
	srcRefused, lisRefused := refused("source"), refused("listener")
	s.end()
	if s.err != nil {
		t.Errorf("the node during the flood: %v", s.err)
	}
	select {
	case <-n.p.done:
		t.Fatalf("the node exited during the flood (%v):\n%s", n.p.err, n.p.output())
	default:
	}
	t.Logf("%d idle connections opened in %v (%d dials failed%s), held %v", len(conns), dialTime.Round(time.Millisecond), dialErrs.Load(),
		func() string {
			if e := firstErr.Load(); e != nil {
				return ", first: " + e.(string)
			}
			return ""
		}(), sz.Hold)
	t.Logf("node open files: %d before, peak %d, %d at the end of the hold (cap %d)", baseFDs, s.peakFDs, afterHold, sz.MaxConns)
	t.Logf("node VmRSS: %.1f MB before, peak %.1f MB", float64(baseRSS)/1e6, float64(s.peakRSS)/1e6)
	t.Logf("refused connections: source %v, listener %v", srcRefused, lisRefused)
	t.Logf("connected client: %d health checks, %d failed, slowest %d ms", checks.Load(), failed.Load(), worst.Load())

	if s.peakFDs > baseFDs+sz.MaxConns+16 {
		t.Errorf("the node had %d files open at the peak: %d before the flood and a cap of %d connections", s.peakFDs, baseFDs, sz.MaxConns)
	}
	// The client's own connection holds a place from 127.0.0.1.
	if want := float64(sz.FromClient - (sz.MaxPerSrc - 1)); srcRefused < want {
		t.Errorf("connections refused by the per-source cap: %v, want at least %v", srcRefused, want)
	}
	if want := float64(sz.Conns - sz.MaxConns - sz.FromClient); lisRefused < want {
		t.Errorf("connections refused by the listener cap: %v, want at least %v", lisRefused, want)
	}
	if worst.Load() > sz.MaxHealthMS {
		t.Errorf("the slowest health check of the connected client took %d ms, want at most %d", worst.Load(), sz.MaxHealthMS)
	}
	// Once the flood is gone, a new client is served.
	for _, c := range conns {
		c.Close()
	}
	fresh := healthpb.NewHealthClient(dialNode(t, f, n.addr, identity.Coordinator("isa", "main")))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		_, err := fresh.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a new client after the flood: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fds, _ := openFDs(n.pid())
	t.Logf("after the flood closed: a new client is served; node open files %d", fds)
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// --- 3. Many operators' concurrent rollups ------------------------------

type operatorRollups struct {
	Operators, Each, Nodes int
}

// TestFloodOperatorsRollups runs node processes and a coordinator process
// with their default limits (a node grants each caller identity 5 Aggregate
// calls a second in bursts of 60; the coordinator paces its calls to each
// member the same way, and grants each operator 0.5 StartRollup calls a
// second in bursts of 10), then has operators each start their rollups all
// at once. A StartRollup refused by the operator's own rate limit (RETRY
// INFO) is made again after its delay, as a patient script would; every
// rollup started must be COMPLETE.
func TestFloodOperatorsRollups(t *testing.T) {
	sz := floodSize(t, operatorRollups{Operators: 3, Each: 4, Nodes: 2}, operatorRollups{Operators: 10, Each: 20, Nodes: 3})
	if *floodOperators > 0 || *floodEach > 0 {
		sz.Operators, sz.Each = cmp.Or(*floodOperators, sz.Operators), cmp.Or(*floodEach, sz.Each)
		t.Logf("-flood-operators, -flood-rollups: %+v", sz)
	}
	ids := []identity.ID{identity.Coordinator("isa", "main")}
	memberCodes := []string{"FR", "IT", "SG", "DE", "ES"}[:sz.Nodes]
	for _, c := range memberCodes {
		ids = append(ids, identity.Node("isa", c))
	}
	for i := range sz.Operators {
		ids = append(ids, identity.Operator("isa", fmt.Sprintf("op%d", i+1)))
	}
	f := newFederation(t, ids...)
	var members []string
	for _, c := range memberCodes {
		members = append(members, "--member", c+"="+startFloodNode(t, f, c).addr)
	}
	cert, key := f.files(identity.Coordinator("isa", "main"))
	coord := start(t, append([]string{"coordinator", "--data", filepath.Join(t.TempDir(), "coord.db"), "--listen", "127.0.0.1:0",
		"--cacert", f.ca, "--cert", cert, "--key", key}, members...)...)
	addr := coord.waitLog(t, servingRE, 30*time.Second)

	type result struct {
		op      string
		state   fedreportv1.RollupState
		reason  string
		limited int
		err     error
		took    time.Duration
	}
	results := make(chan result, sz.Operators*sz.Each)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range sz.Operators {
		op := identity.Operator("isa", fmt.Sprintf("op%d", i+1))
		cfg := mtls.ClientConfig(f.source(t, op), mtls.ExpectRole("isa", identity.RoleCoordinator))
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		client := fedreportv1.NewCoordinatorServiceClient(conn)
		for range sz.Each {
			wg.Go(func() {
				r := result{op: op.Name}
				t0 := time.Now()
				defer func() { r.took = time.Since(t0); results <- r }()
				for {
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
					resp, err := client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{
						From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}})
					cancel()
					if delay, ok := retryAfter(err); ok && strings.Contains(err.Error(), "StartRollup") {
						r.limited++
						time.Sleep(delay)
						continue
					}
					if err != nil {
						r.err = err
						return
					}
					r.state = resp.GetRollup().GetState()
					r.reason = resp.GetRollup().GetFailureReason()
					for _, m := range resp.GetRollup().GetMembers() {
						if m.GetStatus() != fedreportv1.MemberStatus_MEMBER_STATUS_OK && r.reason == "" {
							r.reason = m.GetMember() + ": " + m.GetReason()
						}
					}
					return
				}
			})
		}
	}
	wg.Wait()
	close(results)
	took := time.Since(start)
	states := map[string]int{}
	reasons := map[string]int{}
	limited, slowest := 0, time.Duration(0)
	for r := range results {
		limited += r.limited
		slowest = max(slowest, r.took)
		if r.err != nil {
			states["error"]++
			reasons[shorten(r.err.Error())]++
			continue
		}
		states[strings.TrimPrefix(r.state.String(), "ROLLUP_STATE_")]++
		if r.state != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
			reasons[shorten(r.reason)]++
		}
	}
	t.Logf("%d operators × %d rollups against %d nodes in %v (slowest %v): %v; StartRollup rate-limited and retried %d times",
		sz.Operators, sz.Each, sz.Nodes, took.Round(time.Millisecond), slowest.Round(time.Millisecond), states, limited)
	if states["COMPLETE"] != sz.Operators*sz.Each {
		t.Errorf("%d of %d rollups did not complete", sz.Operators*sz.Each-states["COMPLETE"], sz.Operators*sz.Each)
		for reason, k := range reasons {
			t.Errorf("  %d× %s", k, reason)
		}
	}
}

// retryAfter returns the delay of the google.rpc.RetryInfo of a
// rate-limited call's status.
func retryAfter(err error) (time.Duration, bool) {
	if status.Code(err) != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration() + 50*time.Millisecond, true
		}
	}
	return 0, false
}

func shorten(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// --- 4. A megabyte in every field that is echoed -------------------------

// TestFloodMegabyteFields sends a 1 MB value (1,000,000 bytes of a control
// character, which an unescaped quote would turn into 4 MB) in each field
// that a node or a coordinator process quotes back in an error, as the
// callers allowed to send it, over mTLS and the node's admin socket; where
// the method's receive limit refuses a megabyte before its handler sees it,
// a value just under the limit (60 KiB) is sent too, so that the handler's
// error is measured as well. Every refusal, message and details together,
// is under 1 KiB. The CLI is fed the same values through files (and, where
// only an argument can carry one, 100 KB arguments): its whole output is
// under 1 KiB. The test is cheap, so it runs at full size without -flood.
func TestFloodMegabyteFields(t *testing.T) {
	const limit = 1024
	mb := strings.Repeat("\x01", 1_000_000)
	under := strings.Repeat("\x01", 60<<10) // under every method's 64 KiB limit
	arg := strings.Repeat("\x01", 100_000)  // under Linux's 128 KiB limit of one argument
	f := newFederation(t, identity.Node("isa", "FR"), identity.Coordinator("isa", "main"),
		identity.MemberAdmin("isa", "FR", "ops"), identity.Operator("isa", "op"))
	n := startFloodNode(t, f, "FR")
	cert, key := f.files(identity.Coordinator("isa", "main"))
	coordProc := start(t, "coordinator", "--data", filepath.Join(t.TempDir(), "coord.db"), "--listen", "127.0.0.1:0",
		"--member", "FR="+n.addr, "--cacert", f.ca, "--cert", cert, "--key", key)
	coordAddr := coordProc.waitLog(t, servingRE, 30*time.Second)

	asCoord := fedreportv1.NewAggregationServiceClient(dialNode(t, f, n.addr, identity.Coordinator("isa", "main")))
	adminTLS := fedreportv1.NewNodeAdminServiceClient(dialNode(t, f, n.addr, identity.MemberAdmin("isa", "FR", "ops")))
	sockConn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sockConn.Close() })
	adminSock := fedreportv1.NewNodeAdminServiceClient(sockConn)
	ocfg := mtls.ClientConfig(f.source(t, identity.Operator("isa", "op")), mtls.ExpectRole("isa", identity.RoleCoordinator))
	oconn, err := grpc.NewClient(coordAddr, grpc.WithTransportCredentials(credentials.NewTLS(ocfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oconn.Close() })
	coord := fedreportv1.NewCoordinatorServiceClient(oconn)

	ingest := func(c fedreportv1.NodeAdminServiceClient, source string, r *fedreportv1.Record) func(context.Context) error {
		return func(ctx context.Context) error {
			stream, err := c.IngestRecords(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&fedreportv1.IngestRecordsRequest{Source: source, Records: []*fedreportv1.Record{r}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = stream.CloseAndRecv()
			return err
		}
	}
	rec := func(id, date string) *fedreportv1.Record {
		return &fedreportv1.Record{RecordId: id, Metric: fedreportv1.Metric_METRIC_ARRESTS, Date: date, Quantity: 1}
	}
	agg := func(r *fedreportv1.AggregateRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			if r.RollupId == "" {
				r.RollupId = "r00000001"
			}
			_, err := asCoord.Aggregate(ctx, r)
			return err
		}
	}
	spec := func(from, to string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := coord.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: from, To: to,
				Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}})
			return err
		}
	}
	cases := []struct {
		name string
		call func(context.Context) error
	}{
		{"node Aggregate rollup_id 1 MB", agg(&fedreportv1.AggregateRequest{RollupId: mb, RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"})},
		{"node Aggregate rollup_id 60 KiB", agg(&fedreportv1.AggregateRequest{RollupId: under, RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"})},
		{"node Aggregate from 1 MB", agg(&fedreportv1.AggregateRequest{From: mb, To: "2020-01-31"})},
		{"node Aggregate from 60 KiB", agg(&fedreportv1.AggregateRequest{From: under, To: "2020-01-31"})},
		{"node Aggregate to 60 KiB", agg(&fedreportv1.AggregateRequest{From: "2020-01-01", To: under})},
		{"node RetractRecords record_id 1 MB (mTLS)", func(ctx context.Context) error {
			_, err := adminTLS.RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{mb}})
			return err
		}},
		{"node RetractRecords record_id 1 MB (socket)", func(ctx context.Context) error {
			_, err := adminSock.RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{mb}})
			return err
		}},
		{"node IngestRecords record_id 1 MB (mTLS)", ingest(adminTLS, "fr.csv", rec(mb, "2020-01-01"))},
		{"node IngestRecords record_id 1 MB (socket)", ingest(adminSock, "fr.csv", rec(mb, "2020-01-01"))},
		{"node IngestRecords date 1 MB (socket)", ingest(adminSock, "fr.csv", rec("FR-1", mb))},
		{"node IngestRecords source 1 MB, record invalid (socket)", ingest(adminSock, mb, rec("FR 1", "2020-01-01"))},
		{"node ListDisclosures page_token 1 MB", func(ctx context.Context) error {
			_, err := adminTLS.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{PageToken: mb})
			return err
		}},
		{"node ListDisclosures page_token 60 KiB", func(ctx context.Context) error {
			_, err := adminTLS.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{PageToken: under})
			return err
		}},
		{"node ListDisclosures since 60 KiB", func(ctx context.Context) error {
			_, err := adminSock.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{Since: under})
			return err
		}},
		{"coordinator GetRollup id 1 MB", func(ctx context.Context) error {
			_, err := coord.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: mb})
			return err
		}},
		{"coordinator GetRollup id 60 KiB", func(ctx context.Context) error {
			_, err := coord.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: under})
			return err
		}},
		{"coordinator StartRollup from 1 MB", spec(mb, "2020-01-31")},
		{"coordinator StartRollup from 60 KiB", spec(under, "2020-01-31")},
		{"coordinator StartRollup to 60 KiB", spec("2020-01-01", under)},
		{"coordinator ListRollups page_token 1 MB", func(ctx context.Context) error {
			_, err := coord.ListRollups(ctx, &fedreportv1.ListRollupsRequest{PageToken: mb})
			return err
		}},
		{"coordinator ListRollups page_token 60 KiB", func(ctx context.Context) error {
			_, err := coord.ListRollups(ctx, &fedreportv1.ListRollupsRequest{PageToken: under})
			return err
		}},
		{"coordinator ListMembers page_token 60 KiB", func(ctx context.Context) error {
			_, err := coord.ListMembers(ctx, &fedreportv1.ListMembersRequest{PageToken: under})
			return err
		}},
	}
	var tw strings.Builder
	largest := 0
	for _, tc := range cases {
		err := tc.call(callCtx(t))
		if err == nil {
			t.Errorf("%s: succeeded, want a refusal", tc.name)
			continue
		}
		st := status.Convert(err)
		size := proto.Size(st.Proto())
		largest = max(largest, size)
		fmt.Fprintf(&tw, "\n  %-56s %-18s %4d B  %.90q", tc.name, st.Code(), size, st.Message())
		if size >= limit {
			t.Errorf("%s: the refusal is %d bytes, want under %d: %.200q", tc.name, size, limit, st.Message())
		}
	}

	// The CLI: files with a megabyte in a field, and 100 KB arguments.
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jsonMB, _ := json.Marshal(mb)
	csvID := write("id.csv", "record_id,metric,date,quantity\n"+mb+",arrests,2020-01-01,1\n")
	csvDate := write("date.csv", "record_id,metric,date,quantity\nFR-1,arrests,"+mb+",1\n")
	jsonlID := write("id.jsonl", `{"record_id":`+string(jsonMB)+`,"metric":"arrests","date":"2020-01-01","quantity":1}`+"\n")
	retractFile := write("retract.txt", mb+"\n")
	adminCert, adminKey := f.files(identity.MemberAdmin("isa", "FR", "ops"))
	opCert, opKey := f.files(identity.Operator("isa", "op"))
	tlsAdmin := []string{"--node", n.addr, "--cacert", f.ca, "--cert", adminCert, "--key", adminKey}
	tlsOp := []string{"--coordinator", coordAddr, "--cacert", f.ca, "--cert", opCert, "--key", opKey}
	cli := []struct {
		name string
		args []string
	}{
		{"fedreport ingest (socket) CSV record_id 1 MB", []string{"ingest", "--node", "unix://" + n.sock, csvID}},
		{"fedreport ingest (socket) CSV date 1 MB", []string{"ingest", "--node", "unix://" + n.sock, csvDate}},
		{"fedreport ingest (socket) JSONL record_id 1 MB", []string{"ingest", "--node", "unix://" + n.sock, jsonlID}},
		{"fedreport ingest (mTLS) CSV record_id 1 MB", append(append([]string{"ingest"}, tlsAdmin...), csvID)},
		{"fedreport retract (socket) --file, id 1 MB", []string{"retract", "--node", "unix://" + n.sock, "--file", retractFile}},
		{"fedreport rollups show, id 100 KB", append(append([]string{"rollups", "show"}, tlsOp...), arg)},
		{"fedreport rollup --from 100 KB", append(append([]string{"rollup"}, tlsOp...), "--from", arg, "--to", "2020-01-31")},
		{"fedreport audit --since 100 KB (socket)", []string{"audit", "--node", "unix://" + n.sock, "--since", arg}},
	}
	for _, c := range cli {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := run(t, ctx, c.args...)
		cancel()
		if err == nil {
			t.Errorf("%s: exited 0, want a refusal:\n%.300q", c.name, out)
			continue
		}
		largest = max(largest, len(out))
		fmt.Fprintf(&tw, "\n  %-56s %-18s %4d B  %.90q", c.name, "exit "+strconv.Itoa(exitCode(err)), len(out), strings.TrimSpace(out))
		if len(out) >= limit {
			t.Errorf("%s: the output is %d bytes, want under %d: %.300q", c.name, len(out), limit, out)
		}
	}
	t.Logf("refusals (largest %d bytes):%s", largest, tw.String())
	// What the processes logged meanwhile (not bounded here: reported).
	for name, p := range map[string]*proc{"node": n.p, "coordinator": coordProc} {
		longest := 0
		for line := range strings.Lines(p.output()) {
			longest = max(longest, len(line))
		}
		t.Logf("%s: longest log line %d bytes", name, longest)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// rollupStarted is when the tests' rollups started: a coordinator asks
// a member only within a running rollup, named with its start.
var rollupStarted = timestamppb.Now()
