package records

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestGen(t *testing.T) {
	t.Parallel()
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2020, 9, 30, 0, 0, 0, 0, time.UTC)
	collect := func(seed int64) []*fedreportv1.Record {
		var out []*fedreportv1.Record
		if err := Gen("FR", 3000, seed, from, to, func(r *fedreportv1.Record) error {
			out = append(out, r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := collect(1), collect(1), collect(2)
	same := true
	seen := map[any]bool{}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			t.Fatalf("record %d differs between two runs with seed 1: %v, %v", i, a[i], b[i])
		}
		if !proto.Equal(a[i], c[i]) {
			same = false
		}
		if want := recordID("FR", uint64(i+1)); a[i].GetRecordId() != want {
			t.Fatalf("record %d: id %q, want %q", i, a[i].GetRecordId(), want)
		}
		if err := Validate(a[i], to); err != nil {
			t.Fatalf("record %d is invalid: %v", i, err)
		}
		if a[i].GetDate() < "2020-01-01" || a[i].GetDate() > "2020-09-30" {
			t.Fatalf("record %d: date %s outside the range", i, a[i].GetDate())
		}
		seen[a[i].GetMetric()] = true
		seen[a[i].GetOffence()] = true
		seen[a[i].GetChannel()] = true
		seen[a[i].GetVictimAge()] = true
	}
	if same {
		t.Errorf("seeds 1 and 2 gave the same records")
	}
	if want := 5 + 7 + 8 + 5; len(seen) != want {
		t.Errorf("distinct metric and dimension values: got %d, want %d", len(seen), want)
	}
	if got := recordID("FR", 1); got != "FR-000000001" {
		t.Errorf("recordID: got %q, want FR-000000001", got)
	}
}

func TestGenTotals(t *testing.T) {
	t.Parallel()
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2020, 5, 30, 0, 0, 0, 0, time.UTC)
	totals := map[fedreportv1.Metric]uint64{1: 77, 2: 54, 3: 58}
	got := map[fedreportv1.Metric]uint64{}
	next, err := GenTotals("IT", totals, 10, 3, from, to, func(r *fedreportv1.Record) error {
		if err := Validate(r, to); err != nil {
			t.Fatalf("invalid record: %v", err)
		}
		got[r.GetMetric()] += uint64(Quantity(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != 10+77+54+58 {
		t.Errorf("next id: got %d, want %d", next, 10+77+54+58)
	}
	for m, want := range totals {
		if got[m] != want {
			t.Errorf("%s: got %d, want %d", MetricName(m), got[m], want)
		}
	}
}

func TestSeededRecordIDsDifferBySeed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		seed int64
		want string
	}{{1, "FR-s1-000000001"}, {7, "FR-s7-000000001"}, {-3, "FR-s-3-000000001"}} {
		got := SeededRecordID("FR", tc.seed, 1)
		if got != tc.want {
			t.Errorf("seed %d: got %q, want %q", tc.seed, got, tc.want)
		}
		if err := ValidateRecordID(got); err != nil {
			t.Errorf("seed %d: %v", tc.seed, err)
		}
	}
}
