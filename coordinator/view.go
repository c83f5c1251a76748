package coordinator

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// GetRollup and ListRollups answer in a view (AIP-157): FULL is the rollup as
// stored; BASIC, the default, leaves out Rollup.members, the per-member
// results that make up nearly all of a big rollup (~19 KB and ~1,200
// messages at 200 members, against ~200 bytes without them). Both are
// served from the stored bytes: BASIC is the stored encoding with the
// members' records cut out, which is what proto.Marshal of the rollup
// without members gives, since a deterministic encoding is the
// concatenation of its top-level fields (TestEncodedAnswersEqualDecodedOnes).

// membersField is Rollup.members.
const membersField protowire.Number = 7

// fullView reports whether view asks for the FULL view, or says what to fix.
func fullView(view fedreportv1.RollupView, verr *ValidationError) bool {
	switch view {
	case fedreportv1.RollupView_ROLLUP_VIEW_UNSPECIFIED, fedreportv1.RollupView_ROLLUP_VIEW_BASIC:
		return false
	case fedreportv1.RollupView_ROLLUP_VIEW_FULL:
		return true
	}
	verr.add("view", "%d is not a view; want ROLLUP_VIEW_BASIC (the default) or ROLLUP_VIEW_FULL", view)
	return false
}

// inView returns r as view shows it: r itself for FULL, a copy without
// members for BASIC (every other field, a field added later included, as
// the encoded path keeps it). It is the decoded path, the reference the
// served bytes are tested against, so it copies rather than being clever.
func inView(r *fedreportv1.Rollup, full bool) *fedreportv1.Rollup {
	if full || len(r.GetMembers()) == 0 {
		return r
	}
	basic := proto.CloneOf(r)
	basic.Members = nil
	return basic
}

// appendRollupField appends to data one buffer from pool holding the
// length-delimited field num with the stored rollup v in the view: v as it
// is for FULL, v without its members' records for BASIC.
func appendRollupField(data mem.BufferSlice, num protowire.Number, v []byte, full bool, pool mem.BufferPool) (mem.BufferSlice, error) {
	if full {
		return appendBytesField(data, num, v, pool), nil
	}
	// The spans of v to keep, in order; adjacent ones are merged, so a
	// stored rollup (members in one run) gives at most two.
	var spans [][2]int
	kept := 0
	for off := 0; off < len(v); {
		field, typ, n := protowire.ConsumeTag(v[off:])
		if n < 0 {
			return data, errBadEncoding
		}
		m := protowire.ConsumeFieldValue(field, typ, v[off+n:])
		if m < 0 {
			return data, errBadEncoding
		}
		end := off + n + m
		if field != membersField {
			if k := len(spans) - 1; k >= 0 && spans[k][1] == off {
				spans[k][1] = end
			} else {
				spans = append(spans, [2]int{off, end})
			}
			kept += end - off
		}
		off = end
	}
	size := protowire.SizeTag(num) + protowire.SizeBytes(kept)
	buf := pool.Get(size)
	b := protowire.AppendTag((*buf)[:0], num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(kept))
	for _, s := range spans {
		b = append(b, v[s[0]:s[1]]...)
	}
	*buf = b
	return append(data, mem.NewBuffer(buf, pool)), nil
}
