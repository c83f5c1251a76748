package node

import (
	"os"
	"runtime/debug"
	"strconv"
)

// GCPercent is the garbage collector target (GOGC) a node process runs with
// unless the GOGC environment variable sets one.
//
// A node's live heap is small (~9 MB at rest) and each answered Aggregate
// leaves ~115 KB of garbage, half of it bbolt's buffer for the disclosure
// log's rewritten leaf: at Go's default of 100 a collection runs every few
// dozen answers, and on a small machine it delays the answer in flight.
// At 400, measured on 2 cores (BENCHMARKS.md, session 5), a 315-cell
// Aggregate's p99 fell by 0.15-1.1 ms in four alternated pairs of runs, a
// 10M-record ingest ran 12% faster, and its peak RSS rose from 95 to 155 MB.
const GCPercent = 400

// SetGCPercent sets the process's GOGC to GCPercent unless the GOGC
// environment variable is set, which Go has then applied already. It
// returns the setting in force, as GOGC spells it, for the start-up log.
func SetGCPercent() string {
	if v, ok := os.LookupEnv("GOGC"); ok {
		return v
	}
	debug.SetGCPercent(GCPercent)
	return strconv.Itoa(GCPercent)
}
