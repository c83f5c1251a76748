package stats

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	t.Parallel()
	var l Latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := l.Percentile(tc.p); got != tc.want {
			t.Errorf("p%v: got %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := (Latencies{}).Percentile(99); got != 0 {
		t.Errorf("empty: got %v, want 0", got)
	}
}

func TestProcMemoryReadsThisProcess(t *testing.T) {
	t.Parallel()
	m, err := ProcMemory(0)
	if err != nil {
		t.Skip(err) // not Linux
	}
	if m.VmRSS == 0 || m.VmHWM < m.VmRSS {
		t.Errorf("got %+v, want a resident set no larger than its peak", m)
	}
}

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until 20 ms of CPU show, or give up after 5 s of wall time.
	x := 0
	for start := time.Now(); time.Since(start) < 5*time.Second; x++ {
		if x%1000 != 0 {
			continue
		}
		now, err := CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 20*time.Millisecond {
			return
		}
	}
	t.Errorf("5 s of spinning (%d turns) did not add 20 ms of CPU time", x)
}
