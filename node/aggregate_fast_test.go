package node

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var everyDimension = []fedreportv1.Dimension{
	fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE,
	fedreportv1.Dimension_DIMENSION_CHANNEL, fedreportv1.Dimension_DIMENSION_VICTIM_AGE,
}

func day(s string) uint32 {
	d, err := records.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestSnapshotCountMatchesCursor compares, cell for cell and in order, the
// snapshot path of count (month sums, day cells for the months a period
// cuts, prefix sums) with the bbolt cursor path and with a recount of the
// records, for random stores and requests: every subset and order of the
// dimensions and metrics, periods that start or end mid-month, single days,
// whole months, across new year, and decades (the sparse accumulator).
func TestSnapshotCountMatchesCursor(t *testing.T) {
	t.Parallel()
	for _, st := range []struct {
		name     string
		n        int
		seed     int64
		from, to string
	}{
		{"sparse, across a new year", 400, 3, "2019-11-20", "2020-02-10"},
		{"dense, nine months", 20000, 4, "2020-01-01", "2020-09-30"},
		{"two years and a leap day", 5000, 5, "2019-01-15", "2021-03-03"},
		{"one day", 300, 6, "2020-02-29", "2020-02-29"},
	} {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			s := openTestStore(t, Policy{MinCellCount: 5, AllowedDimensions: everyDimension})
			var recs []*fedreportv1.Record
			err := records.Gen("FR", st.n, st.seed, records.DayTime(day(st.from)), records.DayTime(day(st.to)),
				func(r *fedreportv1.Record) error { recs = append(recs, r); return nil })
			if err != nil {
				t.Fatal(err)
			}
			ingest(t, s, recs)
			rng := rand.New(rand.NewPCG(uint64(st.seed), 7))
			for i := range 250 {
				req := randomRequest(rng, day(st.from)-40, day(st.to)+40, i)
				q, err := s.prepare(req)
				if err != nil {
					t.Fatalf("request %d %v: %v", i, req, err)
				}
				var fast, slow *accumulator
				err = s.view(func(tx *bolt.Tx) error {
					version := getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion))
					sn := s.snap.Load()
					if sn == nil || sn.version != version {
						return fmt.Errorf("no snapshot of version %d", version)
					}
					if fast, err = count(tx, version, sn, q); err != nil {
						return err
					}
					slow, err = count(tx, version, nil, q)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range []uint32{1, 5} {
					want := recountCells(recs, q, k)
					for path, a := range map[string]*accumulator{"snapshot": fast, "cursor": slow} {
						cells := a.cells(k)
						if diff := diffCells(cells, want); diff != "" {
							t.Fatalf("%s path, request %d {%v} (dense %t), k %d: %s", path, i, req, a.dense != nil, k, diff)
						}
						if got, want := a.appendWire(nil, responseCellsField, k), appendCells(nil, responseCellsField, cells); !bytes.Equal(got, want) {
							t.Fatalf("%s path, request %d {%v} (dense %t), k %d: appendWire gives %x, want the encoding of cells %x", path, i, req, a.dense != nil, k, got, want)
						}
					}
				}
			}
		})
	}
}

// randomRequest returns a request over days lo..hi (mostly), of a kind
// chosen by i.
func randomRequest(rng *rand.Rand, lo, hi uint32, i int) *fedreportv1.AggregateRequest {
	from := lo + uint32(rng.IntN(int(hi-lo+1)))
	var to uint32
	switch i % 7 {
	case 0: // one day
		to = from
	case 1: // whole months
		m := records.MonthOf(from)
		from = records.FirstDayOfMonth(m)
		to = records.FirstDayOfMonth(m+1+uint32(rng.IntN(14))) - 1
	case 2: // from the first of a month to mid-month
		from = records.FirstDayOfMonth(records.MonthOf(from))
		to = from + uint32(rng.IntN(200))
	case 3: // mid-month to the end of a month
		to = records.FirstDayOfMonth(records.MonthOf(from)+1+uint32(rng.IntN(5))) - 1
	case 4: // across a new year
		y := records.MonthOf(from)/12*12 + 11 // December
		from = records.FirstDayOfMonth(y) + uint32(rng.IntN(31))
		to = records.FirstDayOfMonth(y+1) + uint32(rng.IntN(60))
	case 5: // decades
		to = from + uint32(15000+rng.IntN(10000))
	default: // anything, within a month or over many
		to = from + uint32(rng.IntN(500))
	}
	var metrics []fedreportv1.Metric
	for _, j := range rng.Perm(5)[:rng.IntN(6)] {
		metrics = append(metrics, fedreportv1.Metric(j+1))
	}
	n := rng.IntN(5)
	if i%7 == 5 && i%2 == 0 {
		n = 4 // decades by everything: the sparse accumulator
	}
	var groupBy []fedreportv1.Dimension
	for _, j := range rng.Perm(4)[:n] {
		groupBy = append(groupBy, everyDimension[j])
	}
	return &fedreportv1.AggregateRequest{Metrics: metrics, From: records.DateString(from), To: records.DateString(to), GroupBy: groupBy}
}

// recountCells is what Aggregate must answer for q under k, counted from
// the records themselves and sorted as the API documents: metric in request
// order, then each grouped dimension in group_by order (months
// chronologically, other values in enum order).
func recountCells(recs []*fedreportv1.Record, q *query, k uint32) []*fedreportv1.Cell {
	type key struct {
		metric          int
		month           uint32
		off, ch, age    int32
		monthN          string
		offN, chN, ageN string
	}
	counts := map[key]uint64{}
	for _, r := range recs {
		d := day(r.GetDate())
		mi := slices.Index(q.metrics, r.GetMetric())
		if d < q.from || d > q.to || mi < 0 {
			continue
		}
		g := key{metric: mi}
		for _, dim := range q.groupBy {
			switch dim {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				g.month, g.monthN = records.MonthOf(d), r.GetDate()[:7]
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				g.off, g.offN = int32(r.GetOffence()), records.OffenceName(r.GetOffence())
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				g.ch, g.chN = int32(r.GetChannel()), records.ChannelName(r.GetChannel())
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				g.age, g.ageN = int32(r.GetVictimAge()), records.VictimAgeName(r.GetVictimAge())
			}
		}
		counts[g] += uint64(records.Quantity(r))
	}
	if len(q.groupBy) == 0 {
		for mi := range q.metrics {
			counts[key{metric: mi}] += 0
		}
	}
	keys := make([]key, 0, len(counts))
	for g := range counts {
		keys = append(keys, g)
	}
	slices.SortFunc(keys, func(a, b key) int {
		c := cmp.Compare(a.metric, b.metric)
		for _, dim := range q.groupBy {
			if c != 0 {
				return c
			}
			switch dim {
			case fedreportv1.Dimension_DIMENSION_MONTH:
				c = cmp.Compare(a.month, b.month)
			case fedreportv1.Dimension_DIMENSION_OFFENCE:
				c = cmp.Compare(a.off, b.off)
			case fedreportv1.Dimension_DIMENSION_CHANNEL:
				c = cmp.Compare(a.ch, b.ch)
			case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
				c = cmp.Compare(a.age, b.age)
			}
		}
		return c
	})
	out := make([]*fedreportv1.Cell, 0, len(keys))
	for _, g := range keys {
		c := &fedreportv1.Cell{Metric: q.metrics[g.metric], Month: g.monthN, Offence: g.offN, Channel: g.chN, VictimAge: g.ageN}
		suppress(c, counts[g], k)
		out = append(out, c)
	}
	return out
}

// diffCells describes the first difference between two cell lists, or
// returns "".
func diffCells(got, want []*fedreportv1.Cell) string {
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			return fmt.Sprintf("got %d cells, want %d; first missing: {%v}", len(got), len(want), want[i])
		case i >= len(want):
			return fmt.Sprintf("got %d cells, want %d; first extra: {%v}", len(got), len(want), got[i])
		case !proto.Equal(got[i], want[i]):
			return fmt.Sprintf("cell %d: got {%v}, want {%v}", i, got[i], want[i])
		}
	}
	return ""
}

// TestAggregateDisclosureBytesMatchProto checks that the disclosure entries
// put together from the once-encoded cells are byte for byte what
// marshalling the whole DisclosureEntry gives (the format before the cells
// were encoded once, and what Verify and older files use), that the
// response digest is that of the deterministic response, and that the chain
// verifies, for answers from the snapshot and from cursors.
func TestAggregateDisclosureBytesMatchProto(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{MinCellCount: 5, AllowedDimensions: everyDimension})
	recs := genRecords(t, "FR", 3000, 9)
	ingest(t, s, recs)
	rng := rand.New(rand.NewPCG(3, 4))
	var resps []*fedreportv1.AggregateResponse
	var reqs []*fedreportv1.AggregateRequest
	for i := range 60 {
		req := randomRequest(rng, day("2019-12-01"), day("2020-10-31"), i)
		req.RollupId = fmt.Sprintf("R-%d", i)
		if i%3 == 0 {
			req.RollupId = "" // omitted from the entry
		}
		if i%2 == 1 {
			s.snap.Store(nil) // from cursors
		}
		// Every other answer is the encoded one the server sends: the
		// deterministic encoding of the response the log below was written
		// for.
		caller := strings.Repeat("spiffe://isa/coordinator/main", 1+i%5)
		var resp *fedreportv1.AggregateResponse
		var err error
		if i%4 < 2 {
			resp, err = s.Aggregate(req, caller)
		} else {
			var pieces [][]byte
			if pieces, err = s.AggregateEncoded(req, caller); err == nil {
				b := bytes.Join(pieces, nil)
				resp = &fedreportv1.AggregateResponse{}
				err = proto.Unmarshal(b, resp)
				if det, derr := deterministic.Marshal(resp); err == nil && (derr != nil || !bytes.Equal(b, det)) {
					t.Fatalf("request %d: AggregateEncoded gives %x, not the deterministic encoding of what it says, %x (%v)", i, b, det, derr)
				}
			}
		}
		if i%2 == 1 {
			s.refreshSnapshot()
		}
		if err != nil {
			t.Fatal(err)
		}
		q, _ := s.prepare(req)
		resps, reqs = append(resps, resp), append(reqs, q.req)
	}
	prev := make([]byte, hashLen)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDisclosures).Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			resp := proto.Clone(resps[i]).(*fedreportv1.AggregateResponse)
			if resp.GetDisclosureSeq() != uint64(i+1) || getUint64(k) != uint64(i+1) {
				t.Fatalf("entry %d: key %d, response seq %d", i+1, getUint64(k), resp.GetDisclosureSeq())
			}
			resp.DisclosureSeq = 0
			respBytes, err := deterministic.Marshal(resp)
			if err != nil {
				return err
			}
			respSum := sha256.Sum256(respBytes)
			want, err := deterministic.Marshal(&fedreportv1.DisclosureEntry{
				Seq:            uint64(i + 1),
				Time:           timestamppb.New(testNow),
				Caller:         strings.Repeat("spiffe://isa/coordinator/main", 1+i%5),
				RollupId:       reqs[i].GetRollupId(),
				Request:        reqs[i],
				Cells:          resp.GetCells(),
				DataVersion:    resp.GetDataVersion(),
				ResponseSha256: respSum[:],
				PrevHash:       prev,
			})
			if err != nil {
				return err
			}
			hash := sha256.Sum256(want)
			if !bytes.Equal(v[hashLen:], want) {
				t.Fatalf("entry %d: body differs from the marshalled entry:\n got %x\nwant %x", i+1, v[hashLen:], want)
			}
			if !bytes.Equal(v[:hashLen], hash[:]) {
				t.Fatalf("entry %d: entry hash %x, want %x", i+1, v[:hashLen], hash)
			}
			prev = hash[:]
			i++
		}
		if i != len(resps) {
			t.Fatalf("got %d entries, want %d", i, len(resps))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %v, %v", err, rep.Problems)
	}
}

// TestCellEncodingMatchesProto checks the hand-written encodings of cells
// and responses against the deterministic marshaller on random values,
// including some the node never writes (a member in a cell, negative enums,
// long strings), and that Cell, AggregateResponse and DisclosureEntry still
// have the fields the encoders were written for.
func TestCellEncodingMatchesProto(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	str := func() string {
		switch rng.IntN(4) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("é", rng.IntN(200)) // lengths over 127: a two-byte length
		default:
			return records.MonthString(uint32(24000 + rng.IntN(100)))
		}
	}
	num := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return rng.Uint64()
		default:
			return uint64(rng.IntN(300))
		}
	}
	for range 200 {
		cells := make([]*fedreportv1.Cell, rng.IntN(20))
		for i := range cells {
			cells[i] = &fedreportv1.Cell{
				Metric: fedreportv1.Metric(rng.IntN(8) - 2), Member: str(), Month: str(), Offence: str(), Channel: str(), VictimAge: str(),
				Count: num(), SuppressedCells: uint32(num()), LowerBound: num(), UpperBound: num(),
			}
		}
		want, err := deterministic.Marshal(&fedreportv1.AggregateResponse{Cells: cells})
		if err != nil {
			t.Fatal(err)
		}
		got := appendCells(nil, responseCellsField, cells)
		if !bytes.Equal(got, want) {
			t.Fatalf("cells %v:\n got %x\nwant %x", cells, got, want)
		}
		r := &fedreportv1.AggregateResponse{Member: str(), MinCellCount: uint32(num()), DataVersion: num(), Cells: cells, DisclosureSeq: num(), RollupId: str()}
		wantResp, _ := deterministic.Marshal(r)
		if got := marshalResponse(r); !bytes.Equal(got, wantResp) {
			t.Fatalf("response %v:\n got %x\nwant %x", r, got, wantResp)
		}
		logged := proto.CloneOf(r)
		logged.DisclosureSeq = 0 // as the digest is taken, before the entry has a seq
		wantLogged, _ := deterministic.Marshal(logged)
		if got, want := responseDigest(logged, got), sha256.Sum256(wantLogged); got != want {
			t.Fatalf("digest of response %v: got %x, want %x", logged, got, want)
		}
		wantEntry, _ := deterministic.Marshal(&fedreportv1.DisclosureEntry{Cells: cells})
		gotEntry, err := appendRenumbered(nil, got, entryCellsField)
		if err != nil || !bytes.Equal(gotEntry, wantEntry) {
			t.Fatalf("renumbered to the entry's field: %v\n got %x\nwant %x", err, gotEntry, wantEntry)
		}
	}
	// The hand-written encodings know these fields; a new one must be added
	// to appendCells, responseDigest or appendDisclosure.
	for _, tc := range []struct {
		msg       proto.Message
		fields    int
		cells     protoreflect.FieldNumber
		cellField string
	}{
		{&fedreportv1.Cell{}, 10, 0, ""},
		{&fedreportv1.AggregateResponse{}, 6, responseCellsField, "cells"},
		{&fedreportv1.DisclosureEntry{}, 10, entryCellsField, "cells"},
	} {
		d := tc.msg.ProtoReflect().Descriptor()
		if n := d.Fields().Len(); n != tc.fields {
			t.Errorf("%s has %d fields, the encoding in aggregate.go and disclosure.go knows %d: update it", d.FullName(), n, tc.fields)
		}
		if tc.cells != 0 {
			if f := d.Fields().ByNumber(tc.cells); f == nil || f.Name() != protoreflect.Name(tc.cellField) {
				t.Errorf("%s field %d is not %s", d.FullName(), tc.cells, tc.cellField)
			}
		}
	}
}

// TestAggregateIgnoresAStaleSnapshot checks that an answer computed from a
// snapshot of another data version is never disclosed, and (the control)
// that a snapshot of the file's version is what answers.
func TestAggregateIgnoresAStaleSnapshot(t *testing.T) {
	t.Parallel()
	pol := Policy{MinCellCount: 1, AllowedDimensions: everyDimension}
	s := openTestStore(t, pol)
	recs := genRecords(t, "FR", 2000, 1)
	ingest(t, s, recs)
	other := openTestStore(t, pol)
	ingest(t, other, genRecords(t, "FR", 2000, 2))
	ingest(t, other, []*fedreportv1.Record{rec("X-1", 1, "2020-03-03", 7)})
	req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: everyDimension[:2]}
	q, _ := s.prepare(req)
	want := recountCells(recs, q, 1)

	stale := *other.snap.Load() // version 2, s is at 1
	s.snap.Store(&stale)
	resp, err := s.Aggregate(req, "t")
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffCells(resp.GetCells(), want); diff != "" {
		t.Errorf("with a snapshot of version %d at version %d: %s", stale.version, resp.GetDataVersion(), diff)
	}

	stale.version = resp.GetDataVersion()
	resp, err = s.Aggregate(req, "t")
	if err != nil {
		t.Fatal(err)
	}
	if diffCells(resp.GetCells(), want) == "" {
		t.Errorf("a snapshot of the file's version was not used (the test above proves nothing)")
	}
	s.refreshSnapshot()
}

// TestMonthSums checks the month sums of a snapshot against its day cells.
func TestMonthSums(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, Policy{})
	ingest(t, s, genRecords(t, "FR", 5000, 3))
	sn := s.snap.Load()
	for _, m := range records.Metrics() {
		want := map[[2]uint32]uint64{}
		for _, c := range sn.cells[m] {
			want[[2]uint32{records.MonthOf(c.day), uint32(c.code)}] += c.n
		}
		got := map[[2]uint32]uint64{}
		ms := &sn.months[m]
		for month := ms.first - 2; month < ms.first+uint32(len(ms.start))+2; month++ {
			for i, c := range ms.month(month) {
				if i > 0 && ms.month(month)[i-1].code >= c.code {
					t.Fatalf("%s %s: codes out of order", records.MetricName(m), records.MonthString(month))
				}
				got[[2]uint32{month, uint32(c.code)}] += c.n
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %d month sums, want %d", records.MetricName(m), len(got), len(want))
		}
		for k, n := range want {
			if got[k] != n {
				t.Fatalf("%s %s code %d: got %d, want %d", records.MetricName(m), records.MonthString(k[0]), k[1], got[k], n)
			}
		}
	}
}

// marshalResponse is r's deterministic encoding (TestCellEncodingMatchesProto).
func marshalResponse(r *fedreportv1.AggregateResponse) []byte {
	b := appendResponseHead(make([]byte, 0, 64+len(r.GetMember())+cellsCap(r.GetCells())), r)
	b = appendCells(b, responseCellsField, r.GetCells())
	return appendResponseTail(b, r)
}
