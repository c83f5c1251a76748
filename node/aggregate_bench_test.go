package node

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// BenchmarkAggregate is the bench's Aggregate step in-process: the whole
// operation by month and offence, every metric, from the release, with the
// disclosure log's durable append. Its CPU profile says what an answer costs
// besides the commit (go test ./node -run '^$' -bench Aggregate -cpuprofile cpu.out).
func BenchmarkAggregate(b *testing.B) {
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
	req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30",
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}, RollupId: "r00000001", RollupStartedAt: timestamppb.New(testNow)}
	b.ReportAllocs()
	before := s.db.Stats().TxStats
	for b.Loop() {
		if _, err := s.Aggregate(req, "spiffe://isa/coordinator/main"); err != nil {
			b.Fatal(err)
		}
	}
	after := s.db.Stats().TxStats
	// Pages and writes each answer's commit makes: what the disk does
	// for it besides the two syncs of a bbolt commit.
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "writes/op")
	b.ReportMetric(float64(after.GetSpill()-before.GetSpill())/float64(b.N), "spills/op")
}
