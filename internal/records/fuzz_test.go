package records

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// fuzzParser checks the properties every parser of outside input must have:
// it never panics, ends, reports every problem as a *LineError with a line
// inside the input, and every record it accepts passes Validate.
func fuzzParser(t *testing.T, in string, next func() (*fedreportv1.Record, error)) {
	lines := strings.Count(in, "\n") + 1
	var last error
	for i := 0; ; i++ {
		if i > len(in)+2 {
			t.Fatalf("reader returned more results (%d) than the input has bytes", i)
		}
		rec, err := next()
		if err == io.EOF {
			return
		}
		if err != nil && err == last {
			return // a sticky error: the reader cannot go on
		}
		last = err
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is not a *LineError", err, err)
			}
			if le.Line < 1 || le.Line > lines {
				t.Fatalf("error %v: line %d outside 1..%d", err, le.Line, lines)
			}
			continue
		}
		if err := Validate(rec, testToday); err != nil {
			t.Fatalf("accepted record %v fails Validate: %v", rec, err)
		}
	}
}

func FuzzCSVReader(f *testing.F) {
	f.Add("record_id,metric,date\nFR-1,arrests,2020-03-04\n")
	f.Add("date,Metric,record_id,quantity,victim_age,channel,offence\r\n2020-03-05,victims_identified,FR-2,3,12-14,,\r\n")
	f.Add("record_id,metric,date,quantity\nFR-1,arrests,2020-01-01,0\nFR-2,arrests\n\"FR\n3\",sites_blocked,2020-02-30,7\n")
	f.Add("\ufeffrecord_id,metric,date,offence,channel\nFR:1.a_b-c,REPORTS_RECEIVED,2000-01-01,OTHER,p2p\n")
	f.Add("record_id,metric,date,bogus\n")
	f.Add("record_id,metric,date\n\"unterminated,arrests,2020-01-01\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := NewCSVReader(strings.NewReader(in), "fuzz.csv")
		r.SetToday(testToday)
		fuzzParser(t, in, r.Next)
	})
}

func FuzzJSONLReader(f *testing.F) {
	f.Add(`{"record_id":"FR-1","metric":"arrests","date":"2020-03-04"}` + "\n")
	f.Add(`{"record_id":"FR-2","metric":"victims_identified","date":"2020-03-05","victim_age":"12-14","quantity":3}` + "\r\n\n")
	f.Add(`{"record_id":"FR-3","metric":"sites_blocked","date":"2020-03-07","quantity":"2","offence":null}`)
	f.Add(`{"record_id":"FR-1","metric":"arrests","date":"2020-01-01","name":"x"}` + "\n[1]\n{} {}\n")
	f.Add(`{"record_id":"\u0046R-1","metric":"arrests","date":"2020-01-01","quantity":1e3}`)
	f.Fuzz(func(t *testing.T, in string) {
		r := NewJSONLReader(strings.NewReader(in), "fuzz.jsonl")
		r.SetToday(testToday)
		fuzzParser(t, in, r.Next)
	})
}

// FuzzJSONLFastPath checks that the fast path reads every line it accepts
// exactly as encoding/json does.
func FuzzJSONLFastPath(f *testing.F) {
	f.Add(`{"record_id":"FR-1","metric":"arrests","date":"2020-03-04"}`)
	f.Add(` { "record_id" : "FR-2" , "quantity" : 12 , "offence" : null } `)
	f.Add(`{"quantity":01}`)
	f.Add(`{"quantity":"7","metric":"x"}`)
	f.Add(`{}`)
	f.Add(`{"metric":"a","metric":"b"}`)
	f.Fuzz(func(t *testing.T, line string) {
		var fast jsonRecord
		if !parseFlatObject([]byte(line), &fast) {
			return
		}
		var slow jsonRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", line, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("fast path accepted %q, which has more than one value", line)
		}
		if fast != slow {
			t.Fatalf("%q: fast path read %+v, encoding/json %+v", line, fast, slow)
		}
	})
}
