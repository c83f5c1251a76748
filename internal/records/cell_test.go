package records

import (
	"testing"
	"time"
)

// FuzzParseMonth checks ParseMonth against the time.Parse and Format round
// trip: the same months accepted (from 1970 on, as ParseDate), numbered as
// MonthOf numbers their days.
func FuzzParseMonth(f *testing.F) {
	for _, v := range []string{"2020-01", "2020-12", "2020-13", "2020-00", "0000-01", "1969-12", "9999-12", "2020-1", "+020-01", "2020/01", "２020-01", ""} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := ParseMonth(v)
		tm, perr := time.Parse("2006-01", v)
		want := perr == nil && tm.Format("2006-01") == v && tm.Year() >= 1970
		if (err == nil) != want {
			t.Fatalf("ParseMonth(%q) error %v, time.Parse round trip says ok = %v", v, err, want)
		}
		if err == nil && n != uint32(tm.Year()*12+int(tm.Month())-1) {
			t.Fatalf("ParseMonth(%q) = %d, want %d", v, n, tm.Year()*12+int(tm.Month())-1)
		}
	})
}
