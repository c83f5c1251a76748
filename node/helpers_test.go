package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var testNow = time.Date(2024, 6, 30, 12, 0, 0, 0, time.UTC)

func openTestStore(t testing.TB, pol Policy) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "fr.db"), StoreOptions{Member: "FR", Policy: pol, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rec(id string, m fedreportv1.Metric, date string, q uint32) *fedreportv1.Record {
	return &fedreportv1.Record{RecordId: id, Metric: m, Date: date, Quantity: q,
		Offence: fedreportv1.Offence_OFFENCE_GROOMING, Channel: fedreportv1.Channel_CHANNEL_APP}
}

const (
	arrests = fedreportv1.Metric_METRIC_ARRESTS
	victims = fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
	sites   = fedreportv1.Metric_METRIC_SITES_BLOCKED
)

func ingest(t *testing.T, s *Store, batches ...[]*fedreportv1.Record) Summary {
	t.Helper()
	sum, err := tryIngest(t.Context(), s, batches...)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func tryIngest(ctx context.Context, s *Store, batches ...[]*fedreportv1.Record) (Summary, error) {
	in, err := s.BeginIngest(ctx)
	if err != nil {
		return Summary{}, err
	}
	defer in.Abort()
	for _, b := range batches {
		if err := in.Add("test.csv", b); err != nil {
			return Summary{}, err
		}
	}
	return in.Commit()
}
