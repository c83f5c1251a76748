package main

import (
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestLogEntryBytesIsWhatTheNodeStores compares the floor's entry size with
// the entry a node logs for the same answer: the listed entry carries its
// hash as field 10 (2 bytes of tag and length more than the stored value's
// hash prefix); the time's encoding may differ by a few bytes.
func TestLogEntryBytesIsWhatTheNodeStores(t *testing.T) {
	t.Parallel()
	s, err := node.OpenStore(filepath.Join(t.TempDir(), "fr.db"), node.StoreOptions{Member: "FR"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	caller := benchCoordinator.String()
	for _, req := range []*fedreportv1.AggregateRequest{
		{From: periodFromString, To: periodToString, RollupId: "r00000001", RollupStartedAt: timestamppb.Now()},
		{From: periodFromString, To: periodToString, RollupId: "01JDX0000000000000000000000", RollupStartedAt: timestamppb.Now(),
			GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}},
	} {
		resp, err := s.Aggregate(req, caller)
		if err != nil {
			t.Fatal(err)
		}
		entries, _, err := s.ListDisclosures(1000, "", "")
		if err != nil {
			t.Fatal(err)
		}
		stored := proto.Size(entries[len(entries)-1]) - 2
		if got := logEntryBytes(req, resp, caller); got < stored-4 || got > stored+4 {
			t.Errorf("%d cells: logEntryBytes %d, the node stored %d", len(resp.GetCells()), got, stored)
		}
	}
}
