package main

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestWithClientGCPausedCollectsNothingDuringTheSeries(t *testing.T) {
	var sink [][]byte
	var during, before runtime.MemStats
	want := errors.New("the series' error")
	err := withClientGCPaused(func() error {
		runtime.ReadMemStats(&before)
		// 64 MB of garbage: at the default GOGC this small heap would be
		// collected several times over.
		for range 64 {
			sink = append(sink, make([]byte, 1<<20))
			sink = sink[len(sink)-1:]
		}
		runtime.ReadMemStats(&during)
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("error: got %v, want the series' own", err)
	}
	if got := during.NumGC - before.NumGC; got != 0 {
		t.Errorf("%d collections during the series, want 0", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent after the series: %d, want 100 restored", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit after the series: %d, want none restored", got)
	}
	runtime.KeepAlive(sink)
}
