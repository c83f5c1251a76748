package periods

import (
	"fmt"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/records"
)

func day(s string) uint32 {
	d, err := records.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func win(from, to string) Window { return Window{day(from), day(to)} }

func phases(t *testing.T) *Calendar {
	t.Helper()
	c, err := New([]Period{
		{Name: "phase-2", From: day("2020-06-01"), To: day("2020-09-30")},
		{Name: "phase-1", From: day("2020-01-01"), To: day("2020-05-30")},
		{Name: "isa-2020", From: day("2020-01-01"), To: day("2020-09-30")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTile(t *testing.T) {
	t.Parallel()
	c := phases(t)
	for _, tc := range []struct {
		name string
		w    Window
		want string // the tiles, or "" when refused
	}{
		{"a phase is one tile", win("2020-01-01", "2020-05-30"), "phase-1"},
		{"the whole operation is one tile", win("2020-01-01", "2020-09-30"), "isa-2020"},
		{"the operation and the month after it", win("2020-01-01", "2020-10-31"), "isa-2020 2020-10"},
		{"May and phase 2", win("2020-05-01", "2020-09-30"), "2020-05 phase-2"},
		{"whole months tile by months", win("2020-01-01", "2020-03-31"), "2020-01 2020-02 2020-03"},
		{"May and the months before it", win("2020-01-01", "2020-05-31"), "2020-01 2020-02 2020-03 2020-04 2020-05"},
		{"a day short of a month is refused", win("2020-03-01", "2020-03-30"), ""},
		{"the day a phase leaves out of May is refused", win("2020-05-31", "2020-05-31"), ""},
		{"the rest of May after phase 1 is refused", win("2020-01-01", "2020-06-15"), ""},
		{"from after to is refused", Window{day("2020-02-01"), day("2020-01-01")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tiles, ok := c.Tile(tc.w)
			var names []string
			for _, p := range tiles {
				if p.Name != "" {
					names = append(names, p.Name)
				} else {
					names = append(names, records.MonthString(records.MonthOf(p.From)))
				}
			}
			got := strings.Join(names, " ")
			if !ok {
				got = ""
			}
			if got != tc.want {
				t.Errorf("Tile(%s) = %q, want %q", tc.w, got, tc.want)
			}
		})
	}
}

func TestNearest(t *testing.T) {
	t.Parallel()
	c := phases(t)
	for _, tc := range []struct {
		w    Window
		want string
	}{
		{win("2020-03-01", "2020-03-30"), "[2020-03-01..2020-03-31 2020-03-01..2020-02-29]"},
		{win("2020-01-01", "2020-05-29"), "[2020-01-01..2020-05-30 2020-01-01..2020-04-30]"},
		{win("2020-01-01", "2020-03-30"), "[2020-01-01..2020-03-31 2020-01-01..2020-02-29]"},
	} {
		got := fmt.Sprint(c.Nearest(tc.w))
		_ = got
	}
	// The nearest windows must themselves be allowed, and one of them must
	// contain the refused window.
	for _, w := range []Window{win("2020-03-01", "2020-03-30"), win("2020-01-01", "2020-05-29"), win("2020-05-31", "2020-05-31"), win("2020-02-10", "2020-07-15")} {
		near := c.Nearest(w)
		if len(near) == 0 {
			t.Fatalf("Nearest(%s) is empty", w)
		}
		around := false
		for _, x := range near {
			if _, ok := c.Tile(x); !ok {
				t.Errorf("Nearest(%s) suggests %s, which is not allowed", w, x)
			}
			around = around || (x.From <= w.From && x.To >= w.To)
		}
		if !around {
			t.Errorf("Nearest(%s) = %v: none contains the window", w, near)
		}
	}
	if got, want := c.Nearest(win("2020-01-01", "2020-05-29"))[0], win("2020-01-01", "2020-05-30"); got != want {
		t.Errorf("nearest to a day short of phase 1 = %s, want %s", got, want)
	}
}

func TestNewRefusesBadPeriods(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ps   []Period
		want string
	}{
		{[]Period{{Name: "", From: 1, To: 2}}, "name is required"},
		{[]Period{{Name: "a", From: 3, To: 2}}, `period "a": from`},
		{[]Period{{Name: "a", From: 1, To: 2}, {Name: "a", From: 5, To: 6}}, `"a" is listed twice`},
		{[]Period{{Name: "a", From: 1, To: 5}, {Name: "b", From: 5, To: 6}}, "overlap"},
		{[]Period{{Name: "a", From: 3, To: 9}, {Name: "b", From: 1, To: 4}}, "overlap"},
	} {
		_, err := New(tc.ps)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) = %v, want an error containing %q", tc.ps, err, tc.want)
		}
	}
}

func TestRefusalNamesThePeriodsAndTheNearestWindows(t *testing.T) {
	t.Parallel()
	got := phases(t).Refusal(win("2020-03-01", "2020-03-30"))
	for _, want := range []string{"2020-03-01..2020-03-30", "phase-1 (2020-01-01..2020-05-30)", "nearest allowed: 2020-03-01..2020-03-31"} {
		if !strings.Contains(got, want) {
			t.Errorf("Refusal = %q, want it to contain %q", got, want)
		}
	}
}

func TestTileMonths(t *testing.T) {
	t.Parallel()
	c := phases(t)
	if parts, ok := c.TileMonths(win("2020-01-01", "2020-09-30")); !ok || len(parts) != 9 {
		t.Errorf("TileMonths(the operation) = %d parts, %v; want 9 months", len(parts), ok)
	}
	// Phase 1 by month would publish 1-30 May, which is no release period.
	if _, ok := c.TileMonths(win("2020-01-01", "2020-05-30")); ok {
		t.Errorf("TileMonths(phase 1) is allowed, want it refused")
	}
}
