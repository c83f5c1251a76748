package node

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The bbolt layout of a node's data file (DESIGN.md "Storage"). Every key is
// big-endian so that cursors scan in order.
//
//	records      record_id -> record value (recordValueLen bytes, below)
//	counters     metric(1) | day(4) | offence(1) | channel(1) | age(1) -> uint64 count, never zero
//	disclosures  seq(8) -> entry_hash(32) || deterministic DisclosureEntry with entry_hash empty
//	meta         schema_version -> uint32, member -> code, data_version -> uint64,
//	             records -> uint64, the number of records as of the last commit,
//	             stream -> start time (unix nanoseconds) while an ingest stream is open
//	undo         0x00 | seq(8) -> the previous values of one batch of records
//	             (undoBatch, ingest_undo.go); exists while an ingest stream is
//	             open (or was interrupted by a crash), and after its commit
//	             until its entries are purged (ingest_rollback.go)
var (
	bucketRecords     = []byte("records")
	bucketCounters    = []byte("counters")
	bucketDisclosures = []byte("disclosures")
	bucketMeta        = []byte("meta")
	bucketUndo        = []byte("undo")

	// bucketCoordinatorRollups is a bucket of a coordinator's data file
	// (coordinator/schema.go), whose meta has no member: with it, a file
	// OpenStore refuses or Verify does not check is named as a
	// coordinator's (isCoordinatorFile).
	bucketCoordinatorRollups = []byte("rollups")

	keySchemaVersion = []byte("schema_version")
	keyMember        = []byte("member")
	keyDataVersion   = []byte("data_version")
	keyRecords       = []byte("records")
	// keyLastWrite is when the last write that changed the data was
	// committed (Unix nanoseconds); files from before it have none.
	keyLastWrite = []byte("last_write")
	keyStream    = []byte("stream")
	// keyRollbackAt is set only while an open stream is rolled back
	// (rollBackStream): the undo entry being restored and how many of its
	// records are done.
	keyRollbackAt = []byte("rollback_at")
)

// isCoordinatorFile reports whether tx is of a coordinator's data file: a
// meta bucket without a member, beside the coordinator's rollups bucket.
func isCoordinatorFile(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	return meta != nil && meta.Get(keyMember) == nil && tx.Bucket(bucketCoordinatorRollups) != nil
}

// SchemaVersion is the layout version this build writes and reads.
const SchemaVersion = 1

const (
	// counterKeyLen is the length of a counters key.
	counterKeyLen = 8
	// recordValueLen is the length of a records value: the record's counter
	// key followed by its quantity (uint32, 1..1,000,000). A record is thus
	// its own counter cell plus a weight, which keeps ingest to byte copies.
	recordValueLen = counterKeyLen + 4
	// hashLen is the length of a disclosure entry hash (SHA-256).
	hashLen = 32
)

// undoAbsent is the undo value meaning "the record did not exist before the
// stream". It cannot be mistaken for a record value, which is longer.
var undoAbsent = []byte{0}

// counterKey is a counters key: metric | day | offence | channel | age.
type counterKey [counterKeyLen]byte

func makeCounterKey(m fedreportv1.Metric, day uint32, o fedreportv1.Offence, c fedreportv1.Channel, a fedreportv1.VictimAge) counterKey {
	var k counterKey
	k[0] = byte(m)
	binary.BigEndian.PutUint32(k[1:5], day)
	k[5] = byte(o)
	k[6] = byte(c)
	k[7] = byte(a)
	return k
}

func (k counterKey) metric() fedreportv1.Metric       { return fedreportv1.Metric(k[0]) }
func (k counterKey) day() uint32                      { return binary.BigEndian.Uint32(k[1:5]) }
func (k counterKey) offence() fedreportv1.Offence     { return fedreportv1.Offence(k[5]) }
func (k counterKey) channel() fedreportv1.Channel     { return fedreportv1.Channel(k[6]) }
func (k counterKey) victimAge() fedreportv1.VictimAge { return fedreportv1.VictimAge(k[7]) }

// String names the cell as problems report it: "arrests 2020-03-04 grooming/app/unknown".
func (k counterKey) String() string {
	return fmt.Sprintf("%s %s %s/%s/%s", records.MetricName(k.metric()), records.DateString(k.day()),
		records.OffenceName(k.offence()), records.ChannelName(k.channel()), records.VictimAgeName(k.victimAge()))
}

// valid reports whether every byte of k is a value this build knows.
func (k counterKey) valid() bool {
	return records.ValidMetric(k.metric()) && records.ValidOffence(k.offence()) &&
		records.ValidChannel(k.channel()) && records.ValidVictimAge(k.victimAge())
}

// recordValue is the stored form of a record.
type recordValue [recordValueLen]byte

// encodeRecord returns the stored form of a validated record whose date is day.
func encodeRecord(r *fedreportv1.Record, day uint32) recordValue {
	var v recordValue
	k := makeCounterKey(r.GetMetric(), day, r.GetOffence(), r.GetChannel(), r.GetVictimAge())
	copy(v[:counterKeyLen], k[:])
	binary.BigEndian.PutUint32(v[counterKeyLen:], records.Quantity(r))
	return v
}

// decodeRecordValue splits a stored record value into its cell and
// quantity; ok is false when b is not a well-formed value.
func decodeRecordValue(b []byte) (k counterKey, q uint32, ok bool) {
	if len(b) != recordValueLen {
		return k, 0, false
	}
	copy(k[:], b[:counterKeyLen])
	q = binary.BigEndian.Uint32(b[counterKeyLen:])
	return k, q, k.valid() && k.metric() != 0 && q >= 1 && q <= records.MaxQuantity
}

// decodeRecord rebuilds the record a stored value stands for.
func decodeRecord(id string, b []byte) (*fedreportv1.Record, bool) {
	k, q, ok := decodeRecordValue(b)
	if !ok {
		return nil, false
	}
	return &fedreportv1.Record{
		RecordId:  id,
		Metric:    k.metric(),
		Date:      records.DateString(k.day()),
		Offence:   k.offence(),
		Channel:   k.channel(),
		VictimAge: k.victimAge(),
		Quantity:  q,
	}, true
}

func getUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func u32(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}
