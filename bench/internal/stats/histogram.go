package stats

import "fmt"

// Histogram is a Prometheus histogram as gathered: cumulative counts at
// each upper bound (seconds), then the total count and sum. The bench reads
// the nodes' own disclosure log histogram (node.DisclosureAppendMetric), so
// what it reports is what an operator's Prometheus would see.
type Histogram struct {
	Bounds     []float64 `json:"bounds_seconds"`
	Cumulative []uint64  `json:"cumulative"`
	Count      uint64    `json:"count"`
	Sum        float64   `json:"sum_seconds"`
}

// Sub returns the observations h has and before had not: h taken after a
// measurement, before at its start, from the same histogram.
func (h Histogram) Sub(before Histogram) (Histogram, error) {
	if len(before.Bounds) == 0 {
		return h, nil
	}
	if len(before.Bounds) != len(h.Bounds) {
		return Histogram{}, fmt.Errorf("histograms of %d and %d buckets", len(h.Bounds), len(before.Bounds))
	}
	d := Histogram{Bounds: h.Bounds, Cumulative: make([]uint64, len(h.Bounds)), Count: h.Count - before.Count, Sum: h.Sum - before.Sum}
	for i := range h.Bounds {
		if h.Bounds[i] != before.Bounds[i] {
			return Histogram{}, fmt.Errorf("bucket %d: bounds %v and %v", i, h.Bounds[i], before.Bounds[i])
		}
		d.Cumulative[i] = h.Cumulative[i] - before.Cumulative[i]
	}
	return d, nil
}

// Quantile returns the q-quantile (0 < q < 1) in seconds as PromQL's
// histogram_quantile does: linear within the bucket that holds rank q·Count,
// from 0 for the first bucket; a rank above the last bound returns that
// bound. It is 0 without observations.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for i, upper := range h.Bounds {
		if c := h.Cumulative[i]; float64(c) >= rank {
			if c == below {
				return upper
			}
			return lower + (upper-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = upper, h.Cumulative[i]
	}
	return h.Bounds[len(h.Bounds)-1]
}

// ShareOver returns the share of observations above bound, which must be
// one of the bucket bounds (then the share is exact, not interpolated).
func (h Histogram) ShareOver(bound float64) (float64, error) {
	for i, b := range h.Bounds {
		if b == bound {
			if h.Count == 0 {
				return 0, nil
			}
			return float64(h.Count-h.Cumulative[i]) / float64(h.Count), nil
		}
	}
	return 0, fmt.Errorf("%v s is not a bucket bound of %v", bound, h.Bounds)
}

// HistogramSummary digests a Histogram in milliseconds, for JSON.
type HistogramSummary struct {
	Count  uint64  `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MeanMs float64 `json:"mean_ms"`
	// Over2ms is the share of observations above 2 ms, a node Aggregate's
	// whole p99 budget.
	Over2ms float64 `json:"share_over_2ms"`
}

// Summarize digests h.
func (h Histogram) Summarize() (HistogramSummary, error) {
	over, err := h.ShareOver(0.002)
	if err != nil {
		return HistogramSummary{}, err
	}
	s := HistogramSummary{Count: h.Count, P50ms: 1e3 * h.Quantile(0.5), P99ms: 1e3 * h.Quantile(0.99), Over2ms: over}
	if h.Count > 0 {
		s.MeanMs = 1e3 * h.Sum / float64(h.Count)
	}
	return s, nil
}
