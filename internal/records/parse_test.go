package records

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// reader is what both parsers offer.
type reader interface {
	Next() (*fedreportv1.Record, error)
	SetToday(time.Time)
}

func newCSV(s string) reader   { return NewCSVReader(strings.NewReader(s), "fr.csv") }
func newJSONL(s string) reader { return NewJSONLReader(strings.NewReader(s), "fr.jsonl") }

// readAll returns the records and the errors of a whole input.
func readAll(t *testing.T, r reader) ([]*fedreportv1.Record, []error) {
	t.Helper()
	r.SetToday(testToday)
	var recs []*fedreportv1.Record
	var errs []error
	var last error
	for i := 0; i < 1000; i++ {
		rec, err := r.Next()
		if err == io.EOF || (err != nil && err == last) {
			return recs, errs
		}
		last = err
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("Next: got %v (%T), want a *LineError", err, err)
			}
			errs = append(errs, err)
			continue
		}
		recs = append(recs, rec)
	}
	t.Fatal("reader did not end")
	return nil, nil
}

func TestCSVReader(t *testing.T) {
	t.Parallel()
	in := "\ufeffdate,Metric,record_id,quantity,victim_age,channel,offence\r\n" +
		"2020-03-04,arrests,FR-1,,,app,grooming\r\n" +
		"\r\n" +
		"2020-03-05,victims_identified,FR-2,3,12-14,,\r\n" +
		"2020-03-06,arrest,FR-3,1,,,\r\n" +
		"2020-03-07,sites_blocked,\"FR-4\",2,,website,other\r\n"
	recs, errs := readAll(t, newCSV(in))
	want := []*fedreportv1.Record{
		{RecordId: "FR-1", Metric: 1, Date: "2020-03-04", Offence: fedreportv1.Offence_OFFENCE_GROOMING, Channel: fedreportv1.Channel_CHANNEL_APP, Quantity: 1},
		{RecordId: "FR-2", Metric: 2, Date: "2020-03-05", VictimAge: fedreportv1.VictimAge_VICTIM_AGE_12_14, Quantity: 3},
		{RecordId: "FR-4", Metric: 3, Date: "2020-03-07", Offence: fedreportv1.Offence_OFFENCE_OTHER, Channel: fedreportv1.Channel_CHANNEL_WEBSITE, Quantity: 2},
	}
	if len(recs) != len(want) {
		t.Fatalf("records: got %d, want %d", len(recs), len(want))
	}
	for i := range want {
		if !proto.Equal(recs[i], want[i]) {
			t.Errorf("record %d: got %v, want %v", i, recs[i], want[i])
		}
	}
	wantErr := `fr.csv:5: metric "arrest" is not a metric (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received)`
	if len(errs) != 1 || errs[0].Error() != wantErr {
		t.Errorf("errors: got %v, want [%s]", errs, wantErr)
	}
}

func TestCSVReaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"an empty file", "", "fr.csv:1: file is empty (want a header row naming the columns record_id,metric,date,offence,channel,victim_age,quantity)"},
		{"an unknown column", "record_id,metric,date,name\n", `fr.csv:1: unknown column "name" (want record_id, metric, date, offence, channel, victim_age, quantity)`},
		{"a column twice", "record_id,metric,date,metric\n", `fr.csv:1: column "metric" appears twice`},
		{"no date column", "record_id,metric\n", "fr.csv:1: header has no date column"},
		{"a short row", "record_id,metric,date\nFR-1,arrests\n", "fr.csv:2: row has a different number of fields than the header's 3"},
		{"a bad quote", "record_id,metric,date\nFR-1,arr\"ests,2020-01-01\n", `fr.csv:2: bare " in non-quoted-field`},
		{"a future date", "record_id,metric,date\nFR-1,arrests,2030-01-01\n", `fr.csv:2: date "2030-01-01" is in the future (want a day up to today, 2024-06-30)`},
		{"a bad record id", "record_id,metric,date\nFR 1,arrests,2020-01-01\n", `fr.csv:2: record_id "FR 1" has ' ' at position 3`},
		{"a quantity of zero", "record_id,metric,date,quantity\nFR-1,arrests,2020-01-01,0\n", `fr.csv:2: quantity "0" is not a whole number from 1 to 1000000`},
		{"an age band on arrests", "record_id,metric,date,victim_age\nFR-1,arrests,2020-01-01,0-5\n", `fr.csv:2: victim_age "0-5" is only allowed on victims_identified records`},
		{"a multi-line field reports its first line", "record_id,metric,date\n\"FR\n1\",arrests,2020-01-01\n", `fr.csv:2: record_id "FR\n1" has '\n'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, errs := readAll(t, newCSV(tt.in))
			if len(errs) == 0 {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Errorf("got %q, want it to start with %q", errs[0], tt.want)
			}
		})
	}
}

func TestJSONLReader(t *testing.T) {
	t.Parallel()
	in := `{"record_id":"FR-1","metric":"arrests","date":"2020-03-04","offence":"grooming","channel":"app"}` + "\n" +
		"\n   \n" +
		`{"record_id":"FR-2","metric":"victims_identified","date":"2020-03-05","victim_age":"12-14","quantity":3}` + "\r\n" +
		`{"record_id":"FR-3","metric":"arrest","date":"2020-03-06"}` + "\n" +
		`{"record_id":"FR-4","metric":"sites_blocked","date":"2020-03-07","quantity":2,"offence":null}`
	recs, errs := readAll(t, newJSONL(in))
	want := []*fedreportv1.Record{
		{RecordId: "FR-1", Metric: 1, Date: "2020-03-04", Offence: fedreportv1.Offence_OFFENCE_GROOMING, Channel: fedreportv1.Channel_CHANNEL_APP, Quantity: 1},
		{RecordId: "FR-2", Metric: 2, Date: "2020-03-05", VictimAge: fedreportv1.VictimAge_VICTIM_AGE_12_14, Quantity: 3},
		{RecordId: "FR-4", Metric: 3, Date: "2020-03-07", Quantity: 2},
	}
	if len(recs) != len(want) {
		t.Fatalf("records: got %d, want %d", len(recs), len(want))
	}
	for i := range want {
		if !proto.Equal(recs[i], want[i]) {
			t.Errorf("record %d: got %v, want %v", i, recs[i], want[i])
		}
	}
	wantErr := `fr.jsonl:5: metric "arrest" is not a metric (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received)`
	if len(errs) != 1 || errs[0].Error() != wantErr {
		t.Errorf("errors: got %v, want [%s]", errs, wantErr)
	}
}

func TestJSONLReaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"an unknown field", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","name":"x"}`, `fr.jsonl:1: unknown field "name" (want record_id, metric, date, offence, channel, victim_age, quantity)`},
		{"a number for a string", `{"record_id":1,"metric":"arrests","date":"2020-01-01"}`, `fr.jsonl:1: field record_id: want a string, got a number`},
		{"a boolean quantity", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","quantity":true}`, `fr.jsonl:1: field quantity: want a whole number from 1 to 1000000`},
		{"a quantity as a string", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","quantity":"3"}`, `fr.jsonl:1: field quantity: want a JSON number from 1 to 1000000, got a string (write "quantity":3, not "quantity":"3")`},
		{"a quantity as a string with escapes", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","quantity":"\u0033"}`, `fr.jsonl:1: field quantity: want a JSON number`},
		{"a repeated key", `{"record_id":"J-6","record_id":"J-7","metric":"arrests","date":"2020-01-01"}`, `fr.jsonl:1: key "record_id" appears twice in the object (give each key once)`},
		{"a repeated key in another case", `{"record_id":"J-6","metric":"arrests","date":"2020-01-01","Record_ID":"J-7"}`, `fr.jsonl:1: key "Record_ID" appears twice in the object`},
		{"a repeated null key", `{"record_id":"J-6","metric":"arrests","date":"2020-01-01","offence":null,"offence":"grooming"}`, `fr.jsonl:1: key "offence" appears twice`},
		{"a fractional quantity", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","quantity":1.5}`, `fr.jsonl:1: quantity "1.5" is not a whole number from 1 to 1000000`},
		{"an array", `[1,2]`, `fr.jsonl:1: want a JSON object with the keys record_id, metric, date, offence, channel, victim_age, quantity, got an array`},
		{"two objects on a line", `{"record_id":"FR-1","metric":"arrests","date":"2020-01-01"} {}`, `fr.jsonl:1: want exactly one JSON object on the line`},
		{"a cut-off object", `{"record_id":"FR-1"`, `fr.jsonl:1: incomplete JSON object`},
		{"not JSON", `record_id,metric,date`, `fr.jsonl:1: not a JSON object`},
		{"a missing metric", `{"record_id":"FR-1","date":"2020-01-01"}`, `fr.jsonl:1: metric "" is required`},
		{"a line too long", `{"record_id":"` + strings.Repeat("x", MaxJSONLLine) + `"}`, `fr.jsonl:1: line is longer than 65536 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, errs := readAll(t, newJSONL(tt.in+"\n"+`{"record_id":"FR-9","metric":"arrests","date":"2020-01-01"}`))
			if len(errs) != 1 {
				t.Fatalf("got errors %v, want exactly one", errs)
			}
			if !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Errorf("got %q, want it to start with %q", errs[0], tt.want)
			}
		})
	}
}

func TestCSVAndJSONLWritersRoundTrip(t *testing.T) {
	t.Parallel()
	var recs []*fedreportv1.Record
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2020, 9, 30, 0, 0, 0, 0, time.UTC)
	if err := Gen("FR", 500, 7, from, to, func(r *fedreportv1.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var csvBuf bytes.Buffer
	if err := WriteCSV(&csvBuf, recs...); err != nil {
		t.Fatal(err)
	}
	var jsonBuf []byte
	for _, r := range recs {
		jsonBuf = AppendJSONL(jsonBuf, r)
	}
	for name, r := range map[string]reader{"csv": newCSV(csvBuf.String()), "jsonl": newJSONL(string(jsonBuf))} {
		got, errs := readAll(t, r)
		if len(errs) != 0 {
			t.Fatalf("%s: errors %v", name, errs)
		}
		if len(got) != len(recs) {
			t.Fatalf("%s: got %d records, want %d", name, len(got), len(recs))
		}
		for i := range recs {
			if !proto.Equal(got[i], recs[i]) {
				t.Fatalf("%s: record %d: got %v, want %v", name, i, got[i], recs[i])
			}
		}
	}
	var empty bytes.Buffer
	if err := WriteCSV(&empty); err != nil || empty.String() != "record_id,metric,date,offence,channel,victim_age,quantity\n" {
		t.Errorf("WriteCSV of nothing: got %q, %v, want the header", empty.String(), err)
	}
}

// linesReader produces a synthetic CSV or JSONL stream of n records without
// holding it in memory.
type linesReader struct {
	n, i  int
	jsonl bool
	buf   []byte
	rec   fedreportv1.Record
}

func (l *linesReader) Read(p []byte) (int, error) {
	for len(l.buf) < len(p) && l.i <= l.n {
		switch {
		case l.i == 0 && !l.jsonl:
			l.buf = append(l.buf, "record_id,metric,date,offence,channel,victim_age,quantity\n"...)
		case l.i > 0:
			l.rec = fedreportv1.Record{RecordId: recordID("FR", uint64(l.i)), Metric: 1, Date: "2020-03-04", Offence: 3, Channel: 2, Quantity: 1}
			if l.jsonl {
				l.buf = AppendJSONL(l.buf, &l.rec)
			} else {
				l.buf = append(l.buf, l.rec.RecordId...)
				l.buf = append(l.buf, ",arrests,2020-03-04,grooming,app,,1\n"...)
			}
		}
		l.i++
	}
	if len(l.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.buf)
	l.buf = l.buf[:copy(l.buf, l.buf[n:])]
	return n, nil
}

func TestParsersStreamInConstantAllocations(t *testing.T) {
	for _, jsonl := range []bool{false, true} {
		var next func(*fedreportv1.Record) error
		src := &linesReader{n: 1 << 30, jsonl: jsonl}
		if jsonl {
			next = NewJSONLReader(src, "big.jsonl").Read
		} else {
			next = NewCSVReader(src, "big.csv").Read
		}
		var rec fedreportv1.Record
		for range 100 { // warm up buffers
			if err := next(&rec); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(2000, func() {
			if err := next(&rec); err != nil {
				t.Fatal(err)
			}
		})
		// CSV: the row string; JSONL: the decoder and its strings. Neither
		// grows with the position in the file.
		if limit := map[bool]float64{false: 2, true: 16}[jsonl]; allocs > limit {
			t.Errorf("jsonl=%v: allocations per record: got %v, want at most %v", jsonl, allocs, limit)
		}
	}
}

func BenchmarkCSVReader(b *testing.B) {
	src := &linesReader{n: b.N, jsonl: false}
	r := NewCSVReader(src, "bench.csv")
	var rec fedreportv1.Record
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := r.Read(&rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONLReader(b *testing.B) {
	src := &linesReader{n: b.N, jsonl: true}
	r := NewJSONLReader(src, "bench.jsonl")
	var rec fedreportv1.Record
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := r.Read(&rec); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReadersReportTheLineOfEachRecord(t *testing.T) {
	t.Parallel()
	type liner interface {
		reader
		Line() int
	}
	for _, tc := range []struct {
		name string
		r    liner
		want []int
	}{
		{"csv with a blank line and a quoted field over two lines",
			NewCSVReader(strings.NewReader("record_id,metric,date,offence,channel,victim_age,quantity\n"+"FR-1,arrests,2020-03-04,,,,\n\nFR-2,arrests,2020-03-04,\"grooming\n\",,,\nFR-3,arrests,2020-03-04,,,,\n"), "fr.csv"),
			[]int{2, 4, 6}},
		{"jsonl with a blank line",
			NewJSONLReader(strings.NewReader(`{"record_id":"FR-1","metric":"arrests","date":"2020-03-04"}`+"\n\n"+`{"record_id":"FR-2","metric":"arrests","date":"2020-03-04"}`+"\n"), "fr.jsonl"),
			[]int{1, 3}},
	} {
		tc.r.SetToday(testToday)
		var got []int
		for {
			_, err := tc.r.Next()
			if err == io.EOF {
				break
			}
			// The quoted offence is not an offence: its line still counts.
			got = append(got, tc.r.Line())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: lines %v, want %v", tc.name, got, tc.want)
		}
	}
}
