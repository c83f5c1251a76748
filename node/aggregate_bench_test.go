package node

import (
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// BenchmarkAggregate is the bench's Aggregate step in-process: the whole
// operation by month and offence, every metric, from the release, with the
// disclosure log's durable append. Its CPU profile says what an answer costs
// besides the commit (go test ./node -run '^$' -bench Aggregate -cpuprofile cpu.out).
func BenchmarkAggregate(b *testing.B) {
	s, req := aggregateBenchStore(b)
	b.ReportAllocs()
	before := s.db.Stats().TxStats
	for b.Loop() {
		if _, err := s.Aggregate(req, "spiffe://isa/coordinator/main"); err != nil {
			b.Fatal(err)
		}
	}
	reportCommits(b, s, before)
}

// BenchmarkAggregateParallel is BenchmarkAggregate with eight callers per
// core at once, as when several coordinators ask the same member: the
// appends share commits (bolt.DB.Batch), and whatever an answer does inside
// the write transaction, the others wait for.
func BenchmarkAggregateParallel(b *testing.B) {
	s, req := aggregateBenchStore(b)
	b.ReportAllocs()
	b.SetParallelism(8)
	before := s.db.Stats().TxStats
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Aggregate(req, "spiffe://isa/coordinator/main"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCommits(b, s, before)
}

// aggregateBenchStore returns a store of 100,000 records and the bench's
// Aggregate request.
func aggregateBenchStore(b *testing.B) (*Store, *fedreportv1.AggregateRequest) {
	s := openTestStore(b, operationPolicy())
	in, err := s.BeginIngest(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if err := in.Add("bench", randomRecords(7, 100_000, "r")); err != nil {
		b.Fatal(err)
	}
	if _, err := in.Commit(); err != nil {
		b.Fatal(err)
	}
	return s, &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30",
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}, RollupId: "r00000001", RollupStartedAt: timestamppb.New(testNow)}
}

// reportCommits reports the writes and spills of the answers' commits since
// before, per answer: what the disk does for them besides the two syncs of
// each bbolt commit.
func reportCommits(b *testing.B, s *Store, before bolt.TxStats) {
	after := s.db.Stats().TxStats
	n := float64(b.N)
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/n, "writes/op")
	b.ReportMetric(float64(after.GetSpill()-before.GetSpill())/n, "spills/op")
}
