package coordinator

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestSchedulePeriodIsThePreviousCalendarPeriod(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name     string
		schedule Schedule
		now      string
		from, to string
	}{
		{"weekly on a Wednesday", Schedule{Every: EveryWeek}, "2020-03-11T10:00:00Z", "2020-03-02", "2020-03-08"},
		{"weekly on the Monday it turns", Schedule{Every: EveryWeek}, "2020-03-16T00:00:00Z", "2020-03-09", "2020-03-15"},
		{"weekly on a Sunday evening", Schedule{Every: EveryWeek}, "2020-03-15T23:59:59Z", "2020-03-02", "2020-03-08"},
		{"weekly across a year end", Schedule{Every: EveryWeek}, "2021-01-02T12:00:00Z", "2020-12-21", "2020-12-27"},
		{"weekly delayed six hours, early on Monday", Schedule{Every: EveryWeek, After: 6 * time.Hour}, "2020-03-16T05:00:00Z", "2020-03-02", "2020-03-08"},
		{"weekly delayed six hours, after the delay", Schedule{Every: EveryWeek, After: 6 * time.Hour}, "2020-03-16T06:00:00Z", "2020-03-09", "2020-03-15"},
		{"monthly in a leap year", Schedule{Every: EveryMonth}, "2020-03-01T00:00:00Z", "2020-02-01", "2020-02-29"},
		{"monthly in January", Schedule{Every: EveryMonth}, "2021-01-31T08:00:00Z", "2020-12-01", "2020-12-31"},
		{"daily", Schedule{Every: EveryDay}, "2020-03-01T00:30:00Z", "2020-02-29", "2020-02-29"},
		{"daily from another zone, by UTC", Schedule{Every: EveryDay}, "2020-03-01T01:30:00+02:00", "2020-02-28", "2020-02-28"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := tt.schedule.Period(at(tt.now))
			if got, want := from.Format(dateLayout)+".."+to.Format(dateLayout), tt.from+".."+tt.to; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestValidateSchedules(t *testing.T) {
	t.Parallel()
	good := Schedule{Name: "weekly", Every: EveryWeek, Metrics: []string{"arrests"}, GroupBy: []string{"member", "month"}}
	if err := ValidateSchedules([]Schedule{good}); err != nil {
		t.Fatalf("a good schedule: %v", err)
	}
	for _, tt := range []struct {
		name string
		s    []Schedule
		err  string
	}{
		{"no name", []Schedule{{Every: EveryDay}}, "name"},
		{"an upper-case name", []Schedule{{Name: "Weekly", Every: EveryWeek}}, "name"},
		{"an unknown period", []Schedule{{Name: "w", Every: "fortnightly"}}, "daily, weekly or monthly"},
		{"an unknown metric", []Schedule{{Name: "w", Every: EveryWeek, Metrics: []string{"arrest"}}}, "metric"},
		{"an unknown dimension", []Schedule{{Name: "w", Every: EveryWeek, GroupBy: []string{"country"}}}, "dimension"},
		{"a metric twice", []Schedule{{Name: "w", Every: EveryWeek, Metrics: []string{"arrests", "arrests"}}}, "twice"},
		{"a negative delay", []Schedule{{Name: "w", Every: EveryWeek, After: -time.Hour}}, "negative"},
		{"a name twice", []Schedule{good, good}, "declared twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateSchedules(tt.s); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

func TestParseFileConfigReadsSchedulesAndFederation(t *testing.T) {
	t.Parallel()
	fc, err := ParseFileConfig([]byte(`
require_all: true
shutdown_timeout: 15s
member_code: EU
member_listen: 127.0.0.1:7401
member_cert: node-EU.crt
member_key: node-EU.key
schedules:
  - {name: weekly, every: weekly, metrics: [arrests], group_by: [member]}
  - name: monthly
    every: monthly
    after: 24h
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Schedule{
		{Name: "weekly", Every: EveryWeek, Metrics: []string{"arrests"}, GroupBy: []string{"member"}},
		{Name: "monthly", Every: EveryMonth, After: 24 * time.Hour},
	}
	if !fc.RequireAll || fc.ShutdownTimeout != 15*time.Second || fc.MemberCode != "EU" || fc.MemberListen != "127.0.0.1:7401" ||
		fc.MemberCert != "node-EU.crt" || fc.MemberKey != "node-EU.key" || !slices.EqualFunc(fc.Schedules, want, func(a, b Schedule) bool {
		return a.Name == b.Name && a.Every == b.Every && a.After == b.After && slices.Equal(a.Metrics, b.Metrics) && slices.Equal(a.GroupBy, b.GroupBy)
	}) {
		t.Errorf("got %+v", fc)
	}
	for _, tt := range []struct{ name, yaml, err string }{
		{"both quorum rules", "min_members: 2\nrequire_all: true\n", "one quorum rule"},
		{"a member code without its listener", "member_code: EU\n", "member_listen"},
		{"a misspelt schedule key", "schedules: [{name: w, evry: weekly}]\n", `unknown key "evry"`},
		{"a bad schedule", "schedules: [{name: w, every: yearly}]\n", "schedules[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFileConfig([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

// fakeClock is a settable clock with a tick channel. A tick sent on the
// unbuffered channel is received only once RunSchedules has finished the
// previous pass, so two ticks in a row wait for one whole pass.
type fakeClock struct {
	now  atomic.Pointer[time.Time]
	tick chan time.Time
}

func newFakeClock(now string) *fakeClock {
	c := &fakeClock{tick: make(chan time.Time)}
	c.set(now)
	return c
}

func (c *fakeClock) set(now string) {
	v, err := time.Parse(time.RFC3339, now)
	if err != nil {
		panic(err)
	}
	c.now.Store(&v)
}

func (c *fakeClock) clock() Clock {
	return Clock{Now: func() time.Time { return *c.now.Load() }, Tick: c.tick}
}

// settle waits until RunSchedules has looked at the clock's current time.
func (c *fakeClock) settle() {
	c.tick <- time.Time{}
	c.tick <- time.Time{}
}

func TestRunSchedulesRunsEachPeriodOnceAcrossRestarts(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	fr := &fakeNode{aggregate: answers("FR", 5, exact(arrests, 10))}
	cfg := testConfig(t, ca, Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)})
	cfg.Schedules = []Schedule{
		{Name: "weekly", Every: EveryWeek, Metrics: []string{"arrests"}, GroupBy: []string{"member"}},
		{Name: "monthly", Every: EveryMonth, Metrics: []string{"arrests"}},
	}
	cfg.Logger = slog.New(slog.DiscardHandler)

	run := func(clock *fakeClock, steps func()) {
		t.Helper()
		c, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.RunSchedules(ctx, clock.clock()) }()
		steps()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSchedules: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	specs := func() []string {
		t.Helper()
		st, _, err := openStore(cfg.DataPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.close()
		page, _, err := st.list(100, 0, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range slices.Backward(page) {
			if r.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
				t.Errorf("rollup %s: got %v, want COMPLETE", r.GetId(), r.GetState())
			}
			out = append(out, r.GetRequestedBy()+" "+r.GetSpec().GetFrom()+".."+r.GetSpec().GetTo()+" "+strings.Join(dimNames(r.GetSpec().GetGroupBy()), ","))
		}
		return out
	}

	clock := newFakeClock("2020-03-11T10:00:00Z")
	run(clock, func() {
		clock.settle() // the first pass, at start
		clock.set("2020-03-13T10:00:00Z")
		clock.settle() // nothing new is due on Friday
		clock.set("2020-03-16T00:00:01Z")
		clock.settle() // a new week
	})
	want := []string{
		"schedule/weekly 2020-03-02..2020-03-08 member",
		"schedule/monthly 2020-02-01..2020-02-29 ",
		"schedule/weekly 2020-03-09..2020-03-15 member",
	}
	if got := specs(); !slices.Equal(got, want) {
		t.Fatalf("scheduled rollups:\n got %q\nwant %q", got, want)
	}

	// After a restart in the same week nothing is repeated; on the first of
	// the month the monthly one runs.
	run(clock, func() { clock.settle() })
	if got := specs(); !slices.Equal(got, want) {
		t.Fatalf("after a restart: got %q, want %q", got, want)
	}
	clock.set("2020-04-01T03:00:00Z")
	run(clock, func() { clock.settle() })
	want = append(want, "schedule/weekly 2020-03-23..2020-03-29 member", "schedule/monthly 2020-03-01..2020-03-31 ")
	if got := specs(); !slices.Equal(got, want) {
		t.Fatalf("a month later: got %q, want %q", got, want)
	}
}

func dimNames(ds []fedreportv1.Dimension) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = dimensionName(d)
	}
	return out
}
