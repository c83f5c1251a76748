package records

import (
	"errors"
	"strings"
	"testing"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

var testToday = time.Date(2024, 6, 30, 15, 0, 0, 0, time.UTC)

func validRecord() *fedreportv1.Record {
	return &fedreportv1.Record{
		RecordId: "FR-2020:case.17_b",
		Metric:   fedreportv1.Metric_METRIC_ARRESTS,
		Date:     "2020-03-04",
		Offence:  fedreportv1.Offence_OFFENCE_GROOMING,
		Channel:  fedreportv1.Channel_CHANNEL_APP,
		Quantity: 1,
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(r *fedreportv1.Record)
		field   string // empty: valid
		message string // substring of the error
	}{
		{"a complete record is valid", func(r *fedreportv1.Record) {}, "", ""},
		{"quantity 0 means 1 and is valid", func(r *fedreportv1.Record) { r.Quantity = 0 }, "", ""},
		{"quantity 1,000,000 is valid", func(r *fedreportv1.Record) { r.Quantity = 1_000_000 }, "", ""},
		{"quantity above 1,000,000 is refused", func(r *fedreportv1.Record) { r.Quantity = 1_000_001 }, "quantity", `quantity "1000001" is too large`},
		{"an empty record_id is refused", func(r *fedreportv1.Record) { r.RecordId = "" }, "record_id", `record_id "" is empty`},
		{"a 128-character record_id is valid", func(r *fedreportv1.Record) { r.RecordId = strings.Repeat("a", 128) }, "", ""},
		{"a 129-character record_id is refused", func(r *fedreportv1.Record) { r.RecordId = strings.Repeat("a", 129) }, "record_id", "is 129 characters long (want at most 128)"},
		{"a space in record_id is refused", func(r *fedreportv1.Record) { r.RecordId = "FR 1" }, "record_id", `has ' ' at position 3`},
		{"a slash in record_id is refused", func(r *fedreportv1.Record) { r.RecordId = "FR/1" }, "record_id", "[A-Za-z0-9._:-]"},
		{"non-ASCII in record_id is refused", func(r *fedreportv1.Record) { r.RecordId = "FRé" }, "record_id", "want only characters"},
		{"a missing metric is refused", func(r *fedreportv1.Record) { r.Metric = 0 }, "metric", `metric "" is required (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received)`},
		{"an unknown metric number is refused", func(r *fedreportv1.Record) { r.Metric = 9 }, "metric", `metric "9" is not a metric`},
		{"an empty date is refused", func(r *fedreportv1.Record) { r.Date = "" }, "date", `date "" is not a date (want YYYY-MM-DD)`},
		{"a date in another format is refused", func(r *fedreportv1.Record) { r.Date = "04/03/2020" }, "date", "want YYYY-MM-DD"},
		{"a date with a time is refused", func(r *fedreportv1.Record) { r.Date = "2020-03-04T00:00:00Z" }, "date", "want YYYY-MM-DD"},
		{"month 13 is refused", func(r *fedreportv1.Record) { r.Date = "2020-13-01" }, "date", `date "2020-13-01" does not exist (months run 01 to 12)`},
		{"day 0 is refused", func(r *fedreportv1.Record) { r.Date = "2020-01-00" }, "date", `date "2020-01-00" does not exist (2020-01 has 31 days)`},
		{"29 February of a leap year is valid", func(r *fedreportv1.Record) { r.Date = "2020-02-29" }, "", ""},
		{"29 February of another year is refused", func(r *fedreportv1.Record) { r.Date = "2021-02-29" }, "date", `date "2021-02-29" does not exist (2021-02 has 28 days)`},
		{"31 April is refused", func(r *fedreportv1.Record) { r.Date = "2021-04-31" }, "date", `date "2021-04-31" does not exist (2021-04 has 30 days)`},
		{"2000-01-01 is valid", func(r *fedreportv1.Record) { r.Date = "2000-01-01" }, "", ""},
		{"1999-12-31 is refused", func(r *fedreportv1.Record) { r.Date = "1999-12-31" }, "date", "is before 2000-01-01"},
		{"today is valid", func(r *fedreportv1.Record) { r.Date = "2024-06-30" }, "", ""},
		{"tomorrow is refused", func(r *fedreportv1.Record) { r.Date = "2024-07-01" }, "date", "is in the future (want a day up to today, 2024-06-30)"},
		{"an unknown offence number is refused", func(r *fedreportv1.Record) { r.Offence = 42 }, "offence", "is not an offence"},
		{"an unspecified offence is valid", func(r *fedreportv1.Record) { r.Offence = 0 }, "", ""},
		{"an unknown channel number is refused", func(r *fedreportv1.Record) { r.Channel = 42 }, "channel", "is not a channel"},
		{"an age band on arrests is refused", func(r *fedreportv1.Record) { r.VictimAge = fedreportv1.VictimAge_VICTIM_AGE_6_11 }, "victim_age", `victim_age "6-11" is only allowed on victims_identified records (this one is arrests)`},
		{"an age band on victims_identified is valid", func(r *fedreportv1.Record) {
			r.Metric = fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
			r.VictimAge = fedreportv1.VictimAge_VICTIM_AGE_15_17
		}, "", ""},
		{"an unknown age band number is refused", func(r *fedreportv1.Record) {
			r.Metric = fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED
			r.VictimAge = 9
		}, "victim_age", "is not an age band"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := validRecord()
			tt.edit(r)
			err := Validate(r, testToday)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: got %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("field: got %q, want %q", fe.Field, tt.field)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("message: got %q, want it to contain %q", err.Error(), tt.message)
			}
		})
	}
}

func TestValidateUsesTheCalendarDateOfToday(t *testing.T) {
	t.Parallel()
	r := validRecord()
	r.Date = "2024-07-01"
	// Late on 30 June in UTC is already 1 July in Sydney.
	sydney := time.FixedZone("AEST", 10*3600)
	if err := Validate(r, testToday.In(sydney)); err != nil {
		t.Errorf("Validate with Sydney's today: got %v, want nil", err)
	}
	if err := Validate(r, testToday); err == nil {
		t.Errorf("Validate with UTC's today: got nil, want a future-date error")
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	r := validRecord()
	today := DayOf(testToday)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ValidateDay(r, today); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per valid record: got %v, want 0", allocs)
	}
}

func TestDayNumbers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		date  string
		day   uint32
		month string
	}{
		{"1970-01-01", 0, "1970-01"},
		{"2000-01-01", 10957, "2000-01"},
		{"2000-02-29", 11016, "2000-02"},
		{"2020-03-04", 18325, "2020-03"},
		{"2020-12-31", 18627, "2020-12"},
		{"2100-03-01", 47541, "2100-03"},
	}
	for _, tt := range tests {
		day, err := ParseDate(tt.date)
		if err != nil {
			t.Fatalf("ParseDate(%q): %v", tt.date, err)
		}
		if day != tt.day {
			t.Errorf("ParseDate(%q): got %d, want %d", tt.date, day, tt.day)
		}
		if got := DateString(day); got != tt.date {
			t.Errorf("DateString(%d): got %q, want %q", day, got, tt.date)
		}
		if got := MonthString(MonthOf(day)); got != tt.month {
			t.Errorf("MonthString(MonthOf(%d)): got %q, want %q", day, got, tt.month)
		}
		if got := DayTime(day).Format(time.DateOnly); got != tt.date {
			t.Errorf("DayTime(%d): got %s, want %s", day, got, tt.date)
		}
	}
	// Every day from 1970 to 2200 round-trips and agrees with package time.
	for d := uint32(0); d < 84000; d++ {
		want := time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly)
		if got := DateString(d); got != want {
			t.Fatalf("DateString(%d): got %s, want %s", d, got, want)
		}
		if back, err := ParseDate(want); err != nil || back != d {
			t.Fatalf("ParseDate(%s): got %d, %v, want %d", want, back, err, d)
		}
		if got := DayOf(DayTime(d)); got != d {
			t.Fatalf("DayOf(DayTime(%d)): got %d", d, got)
		}
		if first := FirstDayOfMonth(MonthOf(d)); first > d || d-first > 30 || !strings.HasSuffix(DateString(first), "-01") || MonthOf(first) != MonthOf(d) {
			t.Fatalf("FirstDayOfMonth(MonthOf(%d)): got %d (%s)", d, first, DateString(first))
		}
	}
	if _, err := ParseDate("1969-12-31"); err == nil {
		t.Errorf("ParseDate(1969-12-31): got nil error, want one")
	}
}

func TestParseQuantity(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint32{"": 1, "1": 1, "17": 17, "1000000": 1_000_000} {
		if got, err := ParseQuantity(in); err != nil || got != want {
			t.Errorf("ParseQuantity(%q): got %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "1000001", "1.5", "1e3", " 1", "x", "99999999999"} {
		if _, err := ParseQuantity(in); err == nil {
			t.Errorf("ParseQuantity(%q): got nil error, want one", in)
		}
	}
}
