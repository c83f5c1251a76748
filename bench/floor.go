package main

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/bench/internal/floor"
	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// DiskFloor is what this disk needs for the disclosure log's durability
// alone: bbolt commits of one log entry of the size a node wrote in the
// step, in files of their own opened as a node opens its file, Files of
// them at once per round (the bench/internal/floor package). The node's
// latency in the same step cannot go below it.
type DiskFloor struct {
	Files      int           `json:"files"`
	EntryBytes int           `json:"entry_bytes"`
	Latency    stats.Summary `json:"latency"`
}

// diskFloor measures the floor of files nodes each answering req with resp
// to caller, in the bench's directory (the file system of the nodes' files),
// after flushing what the step left to write.
func (b *bench) diskFloor(ctx context.Context, files, warmup, rounds int, req *fedreportv1.AggregateRequest, resp *fedreportv1.AggregateResponse, caller string) (DiskFloor, error) {
	f := DiskFloor{Files: files, EntryBytes: logEntryBytes(req, resp, caller)}
	b.quiesce(ctx, nil)
	if files == 1 {
		b.logf("timing the disk's floor: %d bbolt commits of %d-byte entries, one after the other", rounds, f.EntryBytes)
	} else {
		b.logf("timing the disk's floor: %d rounds of %d bbolt commits at once, %d-byte entries", rounds, files, f.EntryBytes)
	}
	lat, err := floor.Commits(ctx, floor.Options{Dir: b.dir, Files: files, Warmup: warmup, Rounds: rounds, EntryBytes: f.EntryBytes})
	if err != nil {
		return f, err
	}
	f.Latency = lat.Summarize()
	b.logf("  floor: p50 %s ms, p99 %s ms", ms(f.Latency.P50ms), ms(f.Latency.P99ms))
	return f, nil
}

// logEntryBytes is the size of the value a node stores in its disclosure
// log for answering req with resp to caller: the entry's hash, then the
// entry without it (node/disclosure.go), whose request lists the metrics
// when req left them to the node. The time's encoding may differ by a byte
// or two from the node's.
func logEntryBytes(req *fedreportv1.AggregateRequest, resp *fedreportv1.AggregateResponse, caller string) int {
	const hashLen = 32
	if len(req.GetMetrics()) == 0 {
		req = proto.CloneOf(req)
		req.Metrics = records.Metrics()
	}
	return hashLen + proto.Size(&fedreportv1.DisclosureEntry{
		Seq:            resp.GetDisclosureSeq(),
		Time:           timestamppb.Now(),
		Caller:         caller,
		RollupId:       req.GetRollupId(),
		Request:        req,
		Cells:          resp.GetCells(),
		DataVersion:    resp.GetDataVersion(),
		ResponseSha256: make([]byte, hashLen),
		PrevHash:       make([]byte, hashLen),
	})
}
