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

// disclosureFillPercent is the disclosure log's bucket fill: its keys only
// ever append, so full leaves are never split again.
const disclosureFillPercent = 0.9

// appendDisclosure logs resp (whose disclosure_seq is still 0) as the next
// entry and returns its seq. It runs inside the transaction that read resp's
// cells from the release.
func appendDisclosure(tx *bolt.Tx, now time.Time, caller string, req *fedreportv1.AggregateRequest, resp *fedreportv1.AggregateResponse) (uint64, error) {
	b := tx.Bucket(bucketDisclosures)
	b.FillPercent = disclosureFillPercent
	respBytes, err := deterministic.Marshal(resp)
	if err != nil {
		return 0, err
	}
	respSum := sha256.Sum256(respBytes)
	prev := make([]byte, hashLen)
	var seq uint64 = 1
	if k, v := b.Cursor().Last(); k != nil {
		if len(k) != 8 || len(v) < hashLen {
			return 0, &CorruptError{Problem: fmt.Sprintf("disclosure key %x is malformed", k)}
		}
		seq = binary.BigEndian.Uint64(k) + 1
		copy(prev, v[:hashLen])
	}
	value, err := deterministic.MarshalAppend(make([]byte, hashLen), &fedreportv1.DisclosureEntry{
		Seq:            seq,
		Time:           timestamppb.New(now),
		Caller:         caller,
		RollupId:       req.GetRollupId(),
		Request:        req,
		Cells:          resp.GetCells(),
		DataVersion:    resp.GetDataVersion(),
		ResponseSha256: respSum[:],
		PrevHash:       prev,
		ReleaseVersion: resp.GetReleaseVersion(),
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
