package node

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// BenchmarkIngestOrder measures the store's ingest path (no gRPC) in
// records/s for a stream in key order (ids as `fedreport gen` makes them),
// the same re-sent (every record unchanged), and the same ids shuffled
// (sorted through the spill file at Commit).
func BenchmarkIngestOrder(b *testing.B) {
	const n = 200_000
	inOrder := genRecords(b, "FR", n, 1)
	shuffled := append([]*fedreportv1.Record(nil), inOrder...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	stream := func(b *testing.B, s *Store, recs []*fedreportv1.Record) {
		in, err := s.BeginIngest(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += 2000 {
			if err := in.Add("bench", recs[i:min(i+2000, n)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := in.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name   string
		before []*fedreportv1.Record // ingested before the timer starts
		recs   []*fedreportv1.Record
	}{
		{"in order", nil, inOrder},
		{"re-sent", inOrder, inOrder},
		{"shuffled", nil, shuffled},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s, err := OpenStore(filepath.Join(b.TempDir(), "fr.db"), StoreOptions{Member: "FR"})
				if err != nil {
					b.Fatal(err)
				}
				if bc.before != nil {
					stream(b, s, bc.before)
				}
				b.StartTimer()
				stream(b, s, bc.recs)
				b.StopTimer()
				_ = s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
