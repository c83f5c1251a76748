package node

import (
	"os"
	"runtime/debug"
	"testing"
)

// gcPercent reads the process's GOGC without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestSetGCPercentLeavesAnOperatorsGOGC(t *testing.T) {
	defer debug.SetGCPercent(gcPercent())

	t.Setenv("GOGC", "150") // restores the environment afterwards
	debug.SetGCPercent(150)
	if got := SetGCPercent(); got != "150" || gcPercent() != 150 {
		t.Errorf("with GOGC=150: got %q, GC percent %d; want 150 left alone", got, gcPercent())
	}

	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	if got := SetGCPercent(); got != "400" || gcPercent() != GCPercent {
		t.Errorf("without GOGC: got %q, GC percent %d; want %d", got, gcPercent(), GCPercent)
	}
}
