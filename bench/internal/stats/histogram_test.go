package stats

import (
	"math"
	"testing"
)

func TestHistogramQuantileInterpolatesAsPromQL(t *testing.T) {
	t.Parallel()
	// 100 observations: 10 up to 1 ms, 80 in (1, 2] ms, 9 in (2, 5] ms, 1 above.
	h := Histogram{Bounds: []float64{.001, .002, .005}, Cumulative: []uint64{10, 90, 99}, Count: 100, Sum: 0.2}
	for _, tc := range []struct{ q, want float64 }{
		{0.05, 0.0005},  // half way into the first bucket, from 0
		{0.5, 0.0015},   // rank 50: 40 of the second bucket's 80
		{0.99, 0.005},   // rank 99: the third bucket's top
		{0.995, 0.005},  // rank 99.5 is above every bound: the last bound
		{0.945, 0.0035}, // rank 94.5: 4.5 of the third bucket's 9
	} {
		if got := h.Quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("q %v: got %v, want %v", tc.q, got, tc.want)
		}
	}
	over, err := h.ShareOver(.002)
	if err != nil || over != 0.1 {
		t.Errorf("share over 2 ms: got %v, %v; want 0.1", over, err)
	}
	if _, err := h.ShareOver(.003); err == nil {
		t.Error("share over 3 ms, not a bound: no error")
	}
	s, err := h.Summarize()
	if err != nil || s.Count != 100 || s.MeanMs != 2 || s.Over2ms != 0.1 || math.Abs(s.P50ms-1.5) > 1e-9 {
		t.Errorf("summary: got %+v, %v", s, err)
	}
	if got := (Histogram{Bounds: h.Bounds, Cumulative: []uint64{0, 0, 0}}).Quantile(0.5); got != 0 {
		t.Errorf("empty: got %v, want 0", got)
	}
}

func TestHistogramSubKeepsOnlyTheNewObservations(t *testing.T) {
	t.Parallel()
	before := Histogram{Bounds: []float64{.001, .002}, Cumulative: []uint64{5, 7}, Count: 8, Sum: 0.01}
	after := Histogram{Bounds: []float64{.001, .002}, Cumulative: []uint64{5, 17}, Count: 20, Sum: 0.04}
	d, err := after.Sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if d.Count != 12 || d.Cumulative[0] != 0 || d.Cumulative[1] != 10 || math.Abs(d.Sum-0.03) > 1e-12 {
		t.Errorf("got %+v", d)
	}
	if _, err := after.Sub(Histogram{Bounds: []float64{.001}, Cumulative: []uint64{1}}); err == nil {
		t.Error("histograms of different buckets: no error")
	}
}
