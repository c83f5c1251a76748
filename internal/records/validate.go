package records

import (
	"fmt"
	"strconv"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"

	"github.com/isa-alliance/fedreport/internal/echo"
)

// Limits from DESIGN.md "Domain".
const (
	// MaxRecordIDLen is the longest record_id accepted.
	MaxRecordIDLen = 128
	// MaxQuantity is the largest quantity one record may stand for.
	MaxQuantity = 1_000_000
	// EarliestDate is the first day a record may be dated.
	EarliestDate = "2000-01-01"
)

// earliestDay is EarliestDate as a day number.
var earliestDay = mustDay(EarliestDate)

// FieldError is a value that breaks a rule. Its message names the field, the
// value and what is allowed: `metric "arrest" is not a metric (want ...)`.
// Servers turn it into a google.rpc.BadRequest field violation.
type FieldError struct {
	// Field is the field's name as written in files and protos ("record_id").
	Field string
	// Value is the offending value as received; Error shows it through
	// echo.Quote, shortened and escaped.
	Value string
	// Problem completes the sentence "<field> <value> ...".
	Problem string
}

func (e *FieldError) Error() string {
	return e.Field + " " + echo.Quote(e.Value) + " " + e.Problem
}

// recordIDChars marks the bytes allowed in a record_id: [A-Za-z0-9._:-].
var recordIDChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._:-" {
		t[c] = true
	}
	return t
}()

// ValidateRecordID checks the record_id rule: 1-128 characters of [A-Za-z0-9._:-].
func ValidateRecordID(id string) error {
	if id == "" {
		return &FieldError{Field: "record_id", Value: id, Problem: "is empty (want 1-128 characters of [A-Za-z0-9._:-])"}
	}
	if len(id) > MaxRecordIDLen {
		return &FieldError{Field: "record_id", Value: id, Problem: fmt.Sprintf("is %d characters long (want at most %d)", len(id), MaxRecordIDLen)}
	}
	for i := 0; i < len(id); i++ {
		if !recordIDChars[id[i]] {
			return &FieldError{Field: "record_id", Value: id, Problem: fmt.Sprintf("has %q at position %d (want only characters of [A-Za-z0-9._:-])", rune(id[i]), i+1)}
		}
	}
	return nil
}

// Validate checks r against the record rules of DESIGN.md, with today (its
// calendar date, in its own location) as the last allowed day. It does not
// change r. The error is a *FieldError.
func Validate(r *fedreportv1.Record, today time.Time) error {
	_, err := ValidateDay(r, DayOf(today))
	return err
}

// ValidateDay is Validate with today given as a day number; it also returns
// the record's day so that callers need not parse the date twice.
func ValidateDay(r *fedreportv1.Record, today uint32) (uint32, error) {
	if err := ValidateRecordID(r.GetRecordId()); err != nil {
		return 0, err
	}
	m := r.GetMetric()
	if !ValidMetric(m) {
		if m == fedreportv1.Metric_METRIC_UNSPECIFIED {
			return 0, &FieldError{Field: "metric", Value: "", Problem: "is required (want " + metricWant + ")"}
		}
		return 0, &FieldError{Field: "metric", Value: strconv.Itoa(int(m)), Problem: "is not a metric (want " + metricWant + ")"}
	}
	day, err := ParseDate(r.GetDate())
	if err != nil {
		return 0, err
	}
	if day < earliestDay {
		return 0, &FieldError{Field: "date", Value: r.GetDate(), Problem: "is before " + EarliestDate + " (want a day from " + EarliestDate + " to today)"}
	}
	if day > today {
		return 0, &FieldError{Field: "date", Value: r.GetDate(), Problem: "is in the future (want a day up to today, " + DateString(today) + ")"}
	}
	if o := r.GetOffence(); !ValidOffence(o) {
		return 0, &FieldError{Field: "offence", Value: strconv.Itoa(int(o)), Problem: "is not an offence (want " + offenceWant + ")"}
	}
	if c := r.GetChannel(); !ValidChannel(c) {
		return 0, &FieldError{Field: "channel", Value: strconv.Itoa(int(c)), Problem: "is not a channel (want " + channelWant + ")"}
	}
	if a := r.GetVictimAge(); a != fedreportv1.VictimAge_VICTIM_AGE_UNSPECIFIED {
		if !ValidVictimAge(a) {
			return 0, &FieldError{Field: "victim_age", Value: strconv.Itoa(int(a)), Problem: "is not an age band (want " + victimAgeWant + ")"}
		}
		if m != fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED {
			return 0, &FieldError{Field: "victim_age", Value: VictimAgeName(a), Problem: "is only allowed on victims_identified records (this one is " + metricNames[m] + ")"}
		}
	}
	if q := r.GetQuantity(); q > MaxQuantity {
		return 0, &FieldError{Field: "quantity", Value: strconv.FormatUint(uint64(q), 10), Problem: "is too large (want a whole number from 1 to 1000000)"}
	}
	return day, nil
}

// Quantity returns r's quantity with the default applied: 0 means 1.
func Quantity(r *fedreportv1.Record) uint32 {
	if q := r.GetQuantity(); q != 0 {
		return q
	}
	return 1
}

// ParseQuantity parses a quantity written in a file: empty means 1,
// otherwise a whole number from 1 to 1,000,000.
func ParseQuantity(s string) (uint32, error) {
	if s == "" {
		return 1, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > MaxQuantity {
		return 0, &FieldError{Field: "quantity", Value: s, Problem: "is not a whole number from 1 to 1000000"}
	}
	return uint32(n), nil
}

// Day numbers count days since 1970-01-01 (day 0), as in the counters' keys.

// ParseDate parses a YYYY-MM-DD date to its day number. It checks the
// calendar (no 2021-02-29) and accepts years 1970 to 9999; the record rules
// (not before 2000, not in the future) are Validate's. Every date of the
// API and the command line goes through it, so a date is refused in the
// same words everywhere: callers rename the error's Field, and keep its
// Problem.
func ParseDate(s string) (uint32, error) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, &FieldError{Field: "date", Value: s, Problem: "is not a date (want YYYY-MM-DD)"}
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	switch {
	case !ok1 || !ok2 || !ok3:
		return 0, &FieldError{Field: "date", Value: s, Problem: "is not a date (want YYYY-MM-DD)"}
	case m < 1 || m > 12:
		return 0, &FieldError{Field: "date", Value: s, Problem: "does not exist (months run 01 to 12)"}
	case d < 1 || d > daysIn(y, m):
		return 0, &FieldError{Field: "date", Value: s, Problem: fmt.Sprintf("does not exist (%s has %d days)", s[:7], daysIn(y, m))}
	}
	if y < 1970 {
		return 0, &FieldError{Field: "date", Value: s, Problem: "is before 1970-01-01"}
	}
	return uint32(daysFromCivil(y, m, d)), nil
}

func mustDay(s string) uint32 {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil and civilFromDays are Howard Hinnant's algorithms
// (https://howardhinnant.github.io/date_algorithms.html); they avoid
// time.Time on the parser's and the aggregator's hot paths.
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int) (y, m, d int) {
	z += 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// DateString formats a day number as YYYY-MM-DD.
func DateString(day uint32) string {
	y, m, d := civilFromDays(int(day))
	b := make([]byte, 0, 10)
	b = appendInt(b, y, 4)
	b = append(b, '-')
	b = appendInt(b, m, 2)
	b = append(b, '-')
	b = appendInt(b, d, 2)
	return string(b)
}

// MonthOf returns the calendar month of a day number as year*12 + (month-1),
// a number that sorts chronologically; MonthString formats it.
func MonthOf(day uint32) uint32 {
	y, m, _ := civilFromDays(int(day))
	return uint32(y*12 + m - 1)
}

// MonthString formats a MonthOf number as YYYY-MM.
func MonthString(month uint32) string {
	b := make([]byte, 0, 7)
	b = appendInt(b, int(month/12), 4)
	b = append(b, '-')
	b = appendInt(b, int(month%12)+1, 2)
	return string(b)
}

func appendInt(b []byte, v, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for v > 0 || width > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}

// DayOf returns the day number of t's calendar date in t's own location.
func DayOf(t time.Time) uint32 {
	y, m, d := t.Date()
	return uint32(daysFromCivil(y, int(m), d))
}

// DayTime returns midnight UTC of a day number.
func DayTime(day uint32) time.Time {
	return time.Unix(int64(day)*86400, 0).UTC()
}

// Today returns the current time in UTC, the node's notion of "today" for
// the not-in-the-future rule.
func Today() time.Time { return time.Now().UTC() }

// FirstDayOfMonth returns the day number of the first day of a MonthOf number.
func FirstDayOfMonth(month uint32) uint32 {
	return uint32(daysFromCivil(int(month/12), int(month%12)+1, 1))
}
