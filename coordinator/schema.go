package coordinator

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// The coordinator's bbolt file holds three buckets. Keys are big-endian so a
// cursor walks rollups in the order they were started.
//
//	rollups: seq(8, big-endian) → proto-marshalled fedreportv1.Rollup
//	running: seq(8, big-endian) → empty; the rollups still RUNNING, so a start
//	         finds the ones to mark INTERRUPTED without reading the history
//	meta:    "schema_version"   → uint32 big-endian
//	schedules: schedule name    → first day (YYYY-MM-DD) of the last period
//	         run for it, so a restart neither repeats nor skips a period
//
// The schedules bucket was added without a schema version bump: it is
// created when missing and an older coordinator never reads it, so files
// stay readable in both directions.
//
// The member registry is configuration, not state: it comes from flags or the
// config file on every start, so it is not stored here.
var (
	bucketRollups   = []byte("rollups")
	bucketRunning   = []byte("running")
	bucketMeta      = []byte("meta")
	bucketSchedules = []byte("schedules")

	keySchemaVersion = []byte("schema_version")

	// keyNodeMember is the key a member node's data file keeps its member
	// code under in its own meta bucket (node/schema.go); a coordinator's
	// meta never has it, which is how openStore tells a node's file from
	// its own.
	keyNodeMember = []byte("member")
)

// schemaVersion is the layout version written to meta. Bump it, and add a
// migration in openStore, whenever a bucket or key layout changes.
const schemaVersion uint32 = 1

// rollupIDPrefix and rollupIDDigits shape rollup ids: "r00000042". The
// padding keeps ids sorting in start order up to 10^8 rollups.
const (
	rollupIDPrefix = "r"
	rollupIDDigits = 8
)

// seqKey encodes a rollup sequence number as its bucket key.
func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// keySeq decodes a bucket key written by seqKey.
func keySeq(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// rollupID names the rollup stored under seq.
func rollupID(seq uint64) string {
	return fmt.Sprintf("%s%0*d", rollupIDPrefix, rollupIDDigits, seq)
}

// parseRollupID returns the sequence number a rollup id names. It accepts
// ids with or without the zero padding ("r42" names "r00000042").
func parseRollupID(id string) (uint64, bool) {
	digits, ok := strings.CutPrefix(id, rollupIDPrefix)
	if !ok || digits == "" || len(digits) > 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}
