package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// ingestBatch is how many records travel in one stream message, as in
// `fedreport ingest`.
const ingestBatch = 2000

// callTimeout bounds every unary call the benchmark makes.
const callTimeout = 30 * time.Second

// ingestTimeout bounds one ingest stream (10M records at a slow 20k/s).
const ingestTimeout = 15 * time.Minute

// ingestCSV streams the CSV file at path into the node at conn's admin API
// exactly as `fedreport ingest` does (parse a line, batch 2000 records per
// message, one atomic stream, commit on close) and returns the node's
// summary and the wall time from opening the file to the commit.
func ingestCSV(ctx context.Context, conn *grpc.ClientConn, path string) (*fedreportv1.IngestRecordsResponse, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, ingestTimeout)
	defer cancel()
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("ingest: %w", err)
	}
	source := filepath.Base(path)
	rr := records.NewCSVReader(f, source)
	batch := make([]*fedreportv1.Record, 0, ingestBatch)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: batch, Source: source}); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			return fmt.Errorf("ingest: %w", err)
		}
		batch = make([]*fedreportv1.Record, 0, ingestBatch)
		return nil
	}
	for {
		rec, err := rr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("ingest: %w", err)
		}
		batch = append(batch, rec)
		if len(batch) == ingestBatch {
			if err := send(); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := send(); err != nil {
		return nil, 0, err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, 0, fmt.Errorf("ingest: %w", err)
	}
	return resp, time.Since(start), nil
}

// clientHeapLimit bounds the bench process's heap while its collector is
// paused: a 315-cell answer leaves ~100 KB of decoded garbage, so 1 GiB is
// ~10,000 calls before the collector runs at all.
const clientHeapLimit = 1 << 30

// withClientGCPaused runs f with the bench process's garbage collector
// paused, after a collection: the series f times is not interrupted by the
// client's own collections. The bench is the client standing in for a
// coordinator on another machine; its pauses are its own, not the node's,
// and pgbench, the peer's client, has none. Each call still decodes the
// whole answer. The collector runs again if the heap reaches
// clientHeapLimit, and as before once f returns.
func withClientGCPaused(f func() error) error {
	runtime.GC()
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(clientHeapLimit)
	defer func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}()
	return f()
}

// latencies calls call n times one after the other, after warmup unmeasured
// calls, and returns the latency of each measured call.
func latencies(ctx context.Context, warmup, n int, call func(context.Context) error) (stats.Latencies, error) {
	out := make(stats.Latencies, 0, n)
	for i := range warmup + n {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		start := time.Now()
		err := call(cctx)
		d := time.Since(start)
		cancel()
		if err != nil {
			return nil, err
		}
		if i >= warmup {
			out = append(out, d)
		}
	}
	return out, nil
}

// qps runs call from concurrency goroutines for d and returns the completed
// calls per second. Any failed call fails the measurement.
func qps(ctx context.Context, concurrency int, d time.Duration, call func(ctx context.Context, worker int, i uint64) error) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		done     atomic.Uint64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			for i := uint64(0); time.Now().Before(deadline); i++ {
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				err := call(cctx, w, i)
				ccancel()
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}

// skipDecode is a client codec that encodes requests as protobuf and does
// not decode responses: with it a throughput test measures the server and
// the transport, not the client's decoding on the same two cores.
type skipDecode struct{}

// discarded receives a response skipDecode did not decode.
type discarded struct{ n int }

func (skipDecode) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("skipDecode: cannot encode %T", v)
	}
	return proto.Marshal(m)
}

func (skipDecode) Unmarshal(data []byte, v any) error {
	d, ok := v.(*discarded)
	if !ok {
		return fmt.Errorf("skipDecode: cannot decode into %T", v)
	}
	d.n = len(data)
	return nil
}

// Name is the content subtype, so the server decodes requests as usual.
func (skipDecode) Name() string { return "proto" }

// nodeHistograms are the histograms a node's own metrics keep of what the
// bench times (node.NewMetrics).
type nodeHistograms struct {
	// Appends is node.DisclosureAppendMetric: the disclosure log's appends.
	Appends stats.Histogram `json:"appends"`
	// Aggregate is the time the node's server spent on Aggregate calls,
	// from the first interceptor to the handler's return: the request
	// decoded, the answer logged and encoded, not yet sent.
	Aggregate stats.Histogram `json:"aggregate"`
}

// aggregateHandling is the node's gRPC handling-time histogram.
const aggregateHandling = "fedreport_node_grpc_server_handling_seconds"

// gatherNode reads a node's histograms from g (the members' shared ones
// when g gathers several nodes).
func gatherNode(g prometheus.Gatherer) (nodeHistograms, error) {
	families, err := g.Gather()
	if err != nil {
		return nodeHistograms{}, err
	}
	var h nodeHistograms
	for _, f := range families {
		var dst *stats.Histogram
		switch f.GetName() {
		case node.DisclosureAppendMetric:
			dst = &h.Appends
		case aggregateHandling:
			dst = &h.Aggregate
		default:
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && l.GetValue() != fedreportv1.AggregationService_Aggregate_FullMethodName {
					continue series
				}
			}
			ph := m.GetHistogram()
			*dst = stats.Histogram{Count: ph.GetSampleCount(), Sum: ph.GetSampleSum()}
			for _, b := range ph.GetBucket() {
				dst.Bounds = append(dst.Bounds, b.GetUpperBound())
				dst.Cumulative = append(dst.Cumulative, b.GetCumulativeCount())
			}
		}
	}
	if len(h.Appends.Bounds) == 0 {
		return h, fmt.Errorf("no %s gathered", node.DisclosureAppendMetric)
	}
	return h, nil
}

// summarizeSince summarizes the observations after has and before had not.
func summarizeSince(after, before stats.Histogram) (stats.HistogramSummary, error) {
	d, err := after.Sub(before)
	if err != nil {
		return stats.HistogramSummary{}, err
	}
	return d.Summarize()
}
