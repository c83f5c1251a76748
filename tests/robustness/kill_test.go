package robustness

import (
	"bytes"
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// CI runs the short form; the long form is -kill-iterations 50 (or more).
var killIterations = flag.Int("kill-iterations", 20, "how many times TestSIGKILLMidIngest kills a node mid-ingest")

// streamTotals sums a CSV stream's quantities per metric.
func streamTotals(t *testing.T, path string) map[fedreportv1.Metric]uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := records.NewCSVReader(f, path)
	sum := map[fedreportv1.Metric]uint64{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return sum
		}
		if err != nil {
			t.Fatal(err)
		}
		sum[rec.GetMetric()] += uint64(records.Quantity(rec))
	}
}

// nodeTotals asks a node, as its member admin, for the all-time totals.
func nodeTotals(t *testing.T, f federation, addr string) map[fedreportv1.Metric]uint64 {
	t.Helper()
	cfg := mtls.ClientConfig(f.source(t, identity.MemberAdmin("isa", "FR", "ops")), mtls.ExpectID(identity.Node("isa", "FR")))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := fedreportv1.NewAggregationServiceClient(conn).Aggregate(ctx, &fedreportv1.AggregateRequest{
		// Whole months: a node answers windows its release periods tile.
		From: "2000-01-01", To: endOfThisMonth(),
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[fedreportv1.Metric]uint64{}
	for _, c := range resp.GetCells() {
		if c.GetSuppressedCells() > 0 {
			t.Fatalf("total of %v suppressed; the test streams are too small", c.GetMetric())
		}
		if c.GetCount() > 0 {
			out[c.GetMetric()] = c.GetCount()
		}
	}
	return out
}

func sameTotals(a, b map[fedreportv1.Metric]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSIGKILLMidIngest kills a real node process at a random instant of an
// ingest, again and again. After every kill the file passes bbolt's check
// and `fedreport verify`, and the node, restarted with no manual step,
// holds exactly the last acknowledged stream or the killed one, whole:
// never a mix, never a record counted twice.
func TestSIGKILLMidIngest(t *testing.T) {
	t.Parallel()
	f := newFederation(t, identity.Node("isa", "FR"), identity.MemberAdmin("isa", "FR", "ops"))
	cert, key := f.files(identity.Node("isa", "FR"))
	dir := t.TempDir()
	db := filepath.Join(dir, "fr.db")
	sock := filepath.Join(dir, "fr.sock")
	startNode := func() (*proc, string) {
		p := start(t, "node", "--member", "FR", "--data", db, "--listen", "127.0.0.1:0", "--admin-socket", sock,
			"--cacert", f.ca, "--cert", cert, "--key", key)
		return p, p.waitLog(t, nodeServingRE, 30*time.Second)
	}

	// Every stream replaces the same 30,000 record ids with other content,
	// so each leaves its own totals. Streams 1 and 3 come in random key
	// order, which the node sorts through its spill file and merges at
	// commit; 0 and 2 in key order, written batch by batch.
	const n = "30000"
	streams := make([]string, 4)
	totals := make([]map[fedreportv1.Metric]uint64, len(streams))
	for i := range streams {
		streams[i] = filepath.Join(dir, "stream"+strconv.Itoa(i)+".csv")
		genSameIDs(t, streams[i], n, strconv.Itoa(i+1))
		if i%2 == 1 {
			shuffleLines(t, streams[i], uint64(i))
		}
		totals[i] = streamTotals(t, streams[i])
	}

	p, addr := startNode()
	if out, err := run(t, t.Context(), "ingest", "--node", "unix://"+sock, streams[0]); err != nil {
		t.Fatalf("first ingest: %v\n%s", err, out)
	}
	// The kills fall within the time a replacing stream out of key order
	// takes, the slowest kind the loop sends.
	start := time.Now()
	if out, err := run(t, t.Context(), "ingest", "--node", "unix://"+sock, streams[1]); err != nil {
		t.Fatalf("second ingest: %v\n%s", err, out)
	}
	ingestTime := time.Since(start)
	acked := 1 // the stream the node must hold
	if got := nodeTotals(t, f, addr); !sameTotals(got, totals[acked]) {
		t.Fatalf("after the second ingest: got %v, want %v", got, totals[acked])
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var committedUnacked, rolledBack int
	for i := range *killIterations {
		next := 1 + i%(len(streams)-1)
		if next == acked {
			next = (next % (len(streams) - 1)) + 1
		}
		ingest := make(chan error, 1)
		go func() {
			_, err := run(t, t.Context(), "ingest", "--node", "unix://"+sock, streams[next])
			ingest <- err
		}()
		// Kill anywhere from before the stream starts to well after it would
		// end (streams slow down under load, and a kill after the commit is a
		// case too).
		time.Sleep(time.Duration(rng.Int64N(int64(ingestTime) * 2)))
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.wait(t, 10*time.Second)
		ackErr := <-ingest

		if out, err := runCmd(t, bboltCLI, "check", db); err != nil || !strings.Contains(out, "OK") {
			t.Fatalf("iteration %d: bbolt check right after SIGKILL: %v\n%s", i, err, out)
		}
		if out, err := run(t, t.Context(), "verify", "--data", db); err != nil {
			t.Fatalf("iteration %d: fedreport verify after SIGKILL: %v\n%s", i, err, out)
		}
		// bbolt's check runs again after the node settled the file: a kill
		// can leave an unfinished stream, which only a node's start rolls back.
		p, addr = startNode()
		got := nodeTotals(t, f, addr)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, 20*time.Second); err != nil {
			t.Fatalf("iteration %d: node exit: %v", i, err)
		}
		if out, err := runCmd(t, bboltCLI, "check", db); err != nil || !strings.Contains(out, "OK") {
			t.Fatalf("iteration %d: bbolt check: %v\n%s", i, err, out)
		}
		switch {
		case ackErr == nil && !sameTotals(got, totals[next]):
			t.Fatalf("iteration %d: stream %d was acknowledged but the node holds %v, want %v", i, next, got, totals[next])
		case sameTotals(got, totals[next]):
			if ackErr != nil {
				committedUnacked++
			}
			acked = next
		case sameTotals(got, totals[acked]):
			rolledBack++
		default:
			t.Fatalf("iteration %d: the node holds %v: neither stream %d %v nor stream %d %v whole",
				i, got, acked, totals[acked], next, totals[next])
		}
		p, addr = startNode()
	}
	t.Logf("%d kills: %d streams rolled back whole, %d committed whole before the kill (%d of those unacknowledged)",
		*killIterations, rolledBack, *killIterations-rolledBack, committedUnacked)
}

// shuffleLines puts the data lines of the CSV file path in a random order
// (seeded), keeping its header first.
func shuffleLines(t *testing.T, path string, seed uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	data := lines[1:]
	rand.New(rand.NewPCG(seed, 2)).Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// endOfThisMonth is the last day of the current month, YYYY-MM-DD.
func endOfThisMonth() string {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month()+1, 0, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// genSameIDs is gen with the seed taken out of the record ids (gen writes
// FR-s7-000000001), so that the streams of every seed carry the same ids
// and each replaces the one before.
func genSameIDs(t *testing.T, path, n, seed string) {
	t.Helper()
	gen(t, path, n, seed)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte("\nFR-s"+seed+"-"), []byte("\nFR-")), 0o600); err != nil {
		t.Fatal(err)
	}
}
