package node

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// BenchmarkIngest measures the store's ingest path (no gRPC) in records/s.
func BenchmarkIngest(b *testing.B) {
	const n = 200_000
	recs := genRecords(b, "FR", n, 1)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s, err := OpenStore(filepath.Join(b.TempDir(), "fr.db"), StoreOptions{Member: "FR"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		in, err := s.BeginIngest(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += 5000 {
			if err := in.Add("bench", recs[i:min(i+5000, n)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := in.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAggregate measures Aggregate (counter scan + disclosure append)
// over a store whose counters hold every cell of a nine-month operation,
// as 10M records would.
func BenchmarkAggregate(b *testing.B) {
	s, err := OpenStore(filepath.Join(b.TempDir(), "fr.db"), StoreOptions{Member: "FR"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	in, err := s.BeginIngest(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*fedreportv1.Record, 0, 5000)
	err = records.Gen("FR", 1_000_000, 1, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 9, 30, 0, 0, 0, 0, time.UTC),
		func(r *fedreportv1.Record) error {
			batch = append(batch, r)
			if len(batch) == cap(batch) {
				err := in.Add("bench", batch)
				batch = batch[:0]
				return err
			}
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := in.Commit(); err != nil {
		b.Fatal(err)
	}
	st, _ := s.Stats()
	b.Logf("%d records, %d counter cells", st.Records, st.CounterCells)
	for _, bc := range []struct {
		name string
		req  *fedreportv1.AggregateRequest
	}{
		{"three metrics, whole operation", &fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{1, 2, 3}, From: "2020-01-01", To: "2020-09-30"}},
		{"all metrics by month", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{2}}},
		{"one metric, one month, by offence and channel", &fedreportv1.AggregateRequest{Metrics: []fedreportv1.Metric{1}, From: "2020-03-01", To: "2020-03-31", GroupBy: []fedreportv1.Dimension{3, 4}}},
		// The request of the benchmark's Aggregate step (315 cells).
		{"all metrics by month and offence", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{2, 3}}},
		// What a coordinator asks every member in a rollup (5 cells).
		{"all metrics, ungrouped", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: "R-bench"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchAggregate(b, s, bc.req, false)
		})
		// As the node's server answers: encoded, no cell made a message.
		b.Run("encoded, "+bc.name, func(b *testing.B) {
			benchAggregate(b, s, bc.req, true)
		})
	}
	// The same without fdatasync: the disk is shared and its latency noisy,
	// while the node's own CPU per call is what these variants compare.
	s.db.NoSync = true
	defer func() { s.db.NoSync = false }()
	for _, bc := range []struct {
		name string
		req  *fedreportv1.AggregateRequest
	}{
		{"no sync, all metrics by month and offence", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: []fedreportv1.Dimension{2, 3}}},
		{"no sync, all metrics, ungrouped", &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: "R-bench"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchAggregate(b, s, bc.req, false)
		})
		b.Run("encoded, "+bc.name, func(b *testing.B) {
			benchAggregate(b, s, bc.req, true)
		})
	}
}

// benchAggregate runs req b.N times, with Store.AggregateEncoded when
// encoded, and reports the 99th percentile too.
func benchAggregate(b *testing.B, s *Store, req *fedreportv1.AggregateRequest, encoded bool) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	cpu0 := processCPU()
	for range b.N {
		t0 := time.Now()
		var err error
		if encoded {
			_, err = s.AggregateEncoded(req, "bench")
		} else {
			_, err = s.Aggregate(req, "bench")
		}
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	// CPU time per call is what the changes to Aggregate compare: on a
	// shared machine wall time mostly measures the other jobs.
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkIngestGRPC measures a whole stream through gRPC on the local
// admin socket, as `fedreport ingest` sends it, in records/s.
func BenchmarkIngestGRPC(b *testing.B) {
	const n = 200_000
	recs := genRecords(b, "FR", n, 1)
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		nd, err := Open(Config{Member: "FR", DataPath: filepath.Join(dir, "fr.db"), TrustDomain: "isa"})
		if err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(dir, "s")
		lis, err := ListenAdminSocket(sock)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- nd.Serve(ctx, nil, lis) }()
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		batches := make([][]*fedreportv1.Record, 0, n/5000)
		for i := 0; i < n; i += 5000 {
			batches = append(batches, recs[i:min(i+5000, n)])
		}
		resp, err := sendStream(b.Context(), conn, "bench.csv", batches...)
		if err != nil || resp.GetAdded() != n {
			b.Fatalf("ingest: %v, %v", resp, err)
		}
		b.StopTimer()
		_ = conn.Close()
		cancel()
		<-done
		_ = nd.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkEncodeResponse compares the node's encoder of an answer by month
// and offence (315 cells) with the generic deterministic marshaller it
// replaces in Aggregate and in the gRPC codec.
func BenchmarkEncodeResponse(b *testing.B) {
	r := &fedreportv1.AggregateResponse{Member: "FR", MinCellCount: 5, DataVersion: 7, DisclosureSeq: 1234}
	for _, m := range records.Metrics() {
		for month := uint32(2020 * 12); month < 2020*12+9; month++ {
			for _, o := range records.Offences() {
				n := uint64(month*7+uint32(o)) % 9000
				c := &fedreportv1.Cell{Metric: m, Month: records.MonthString(month), Offence: records.OffenceName(o)}
				suppress(c, n, 5)
				r.Cells = append(r.Cells, c)
			}
		}
	}
	for _, enc := range []struct {
		name string
		fn   func() []byte
	}{
		{"proto", func() []byte { out, _ := deterministic.Marshal(r); return out }},
		{"node", func() []byte { return marshalResponse(r) }},
	} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for range b.N {
				_ = enc.fn()
			}
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
			}
		})
	}
}
