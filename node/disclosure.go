package node

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The disclosure log is a hash chain: entry n stores
//
//	value = entry_hash(32) || body
//	body  = deterministic encoding of DisclosureEntry n with entry_hash empty
//	entry_hash = SHA-256(body), prev_hash = entry_hash of n-1 (32 zero bytes for n = 1)
//
// so editing, removing or reordering an entry breaks a link Verify finds.

// DisclosureFillPercent is the disclosure log's bucket fill: its keys only
// ever append, so full leaves are never split again.
const DisclosureFillPercent = 0.9

// appendDisclosure logs resp (whose disclosure_seq is still 0) as the next
// entry and returns its seq. It runs inside the transaction that computed
// resp. cellsWire is resp's cells as deterministically encoded in an
// AggregateResponse (answer.wire): the response digest and the entry are
// put together from those bytes, so the cells are encoded once per call.
func appendDisclosure(tx *bolt.Tx, now time.Time, caller string, req *fedreportv1.AggregateRequest, resp *fedreportv1.AggregateResponse, cellsWire []byte) (uint64, error) {
	b := tx.Bucket(bucketDisclosures)
	b.FillPercent = DisclosureFillPercent
	respSum := responseDigest(resp, cellsWire)
	prev := make([]byte, hashLen)
	var seq uint64 = 1
	if k, v := b.Cursor().Last(); k != nil {
		if len(k) != 8 || len(v) < hashLen {
			return 0, &CorruptError{Problem: fmt.Sprintf("disclosure key %x is malformed", k)}
		}
		seq = binary.BigEndian.Uint64(k) + 1
		copy(prev, v[:hashLen])
	}
	// Deterministic encoding writes fields in field-number order, so the
	// body is the fields before cells (1-5), the cells renumbered from
	// AggregateResponse's 4 to DisclosureEntry's 6, then the fields after
	// them (7-9): byte for byte what marshalling the whole entry gives
	// (TestAggregateDisclosureBytesMatchProto).
	value := make([]byte, hashLen, hashLen+len(cellsWire)+256+len(caller)+2*len(req.GetRollupId()))
	value, err := deterministic.MarshalAppend(value, &fedreportv1.DisclosureEntry{
		Seq:      seq,
		Time:     timestamppb.New(now),
		Caller:   caller,
		RollupId: req.GetRollupId(),
		Request:  req,
	})
	if err != nil {
		return 0, err
	}
	if value, err = appendRenumbered(value, cellsWire, entryCellsField); err != nil {
		return 0, err
	}
	value, err = deterministic.MarshalAppend(value, &fedreportv1.DisclosureEntry{
		DataVersion:    resp.GetDataVersion(),
		ResponseSha256: respSum[:],
		PrevHash:       prev,
	})
	if err != nil {
		return 0, err
	}
	hash := sha256.Sum256(value[hashLen:])
	copy(value, hash[:])
	if err := b.Put(u64(seq), value); err != nil {
		return 0, err
	}
	return seq, nil
}

// entryCellsField is the field number of DisclosureEntry.cells.
const entryCellsField = 6

// responseDigest returns the SHA-256 of resp's deterministic encoding: its
// fields before cells (1-3), then cellsWire, then those after (5-6), of
// which disclosure_seq is still 0 and so absent.
func responseDigest(resp *fedreportv1.AggregateResponse, cellsWire []byte) [sha256.Size]byte {
	var head, tail [64]byte
	h := sha256.New()
	h.Write(appendResponseHead(head[:0], resp))
	h.Write(cellsWire)
	h.Write(appendResponseTail(tail[:0], resp))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// appendRenumbered appends wire, a run of length-delimited fields, to dst
// with every field renumbered to num.
func appendRenumbered(dst, wire []byte, num protowire.Number) ([]byte, error) {
	for at := 0; at < len(wire); {
		_, typ, n := protowire.ConsumeTag(wire[at:])
		if n < 0 || typ != protowire.BytesType {
			return nil, fmt.Errorf("renumber cells: the field at byte %d is not length-delimited", at)
		}
		v, m := protowire.ConsumeBytes(wire[at+n:])
		if m < 0 {
			return nil, fmt.Errorf("renumber cells: the field at byte %d: %w", at, protowire.ParseError(m))
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		dst = protowire.AppendBytes(dst, v)
		at += n + m
	}
	return dst, nil
}

// decodeDisclosure parses a stored entry and checks its own hash; prev_hash
// links are Verify's.
func decodeDisclosure(v []byte) (*fedreportv1.DisclosureEntry, error) {
	if len(v) < hashLen {
		return nil, fmt.Errorf("value is %d bytes, shorter than its hash", len(v))
	}
	e := new(fedreportv1.DisclosureEntry)
	if err := proto.Unmarshal(v[hashLen:], e); err != nil {
		return nil, fmt.Errorf("body does not decode: %w", err)
	}
	if len(e.GetEntryHash()) != 0 {
		return nil, fmt.Errorf("body carries an entry_hash (it must be empty there)")
	}
	e.EntryHash = append([]byte(nil), v[:hashLen]...)
	return e, nil
}

// Page sizes of ListDisclosures.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListDisclosures returns up to pageSize log entries, oldest first,
// starting at pageToken (the next_page_token of the previous page) and
// keeping only those made on or after since (YYYY-MM-DD, UTC; optional).
func (s *Store) ListDisclosures(pageSize int32, pageToken, since string) ([]*fedreportv1.DisclosureEntry, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", &records.FieldError{Field: "page_size", Value: strconv.Itoa(int(pageSize)), Problem: "is negative (want 0 for 100, or up to 1000)"}
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	start := uint64(1)
	if pageToken != "" {
		n, err := strconv.ParseUint(pageToken, 10, 64)
		if err != nil || n == 0 {
			return nil, "", &records.FieldError{Field: "page_token", Value: pageToken, Problem: "is not a page token (pass next_page_token of the previous page)"}
		}
		start = n
	}
	var sinceTime time.Time
	if since != "" {
		d, err := records.ParseDate(since)
		if err != nil {
			return nil, "", &records.FieldError{Field: "since", Value: since, Problem: err.(*records.FieldError).Problem}
		}
		sinceTime = records.DayTime(d)
	}
	var out []*fedreportv1.DisclosureEntry
	next := ""
	err := s.view(func(tx *bolt.Tx) error {
		out, next = nil, ""
		// A page also ends before it outgrows what a client reads by
		// default: entries of large answers are up to 4 MiB each.
		var bytes grpcsrv.PageBytes
		c := tx.Bucket(bucketDisclosures).Cursor()
		for k, v := c.Seek(u64(start)); k != nil; k, v = c.Next() {
			if len(out) == int(pageSize) {
				next = strconv.FormatUint(getUint64(k), 10)
				return nil
			}
			e, err := decodeDisclosure(v)
			if err != nil {
				return &CorruptError{Problem: fmt.Sprintf("disclosure %d: %v", getUint64(k), err)}
			}
			if !sinceTime.IsZero() && e.GetTime().AsTime().Before(sinceTime) {
				continue
			}
			if !bytes.Add(protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(e))) {
				next = strconv.FormatUint(getUint64(k), 10)
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
