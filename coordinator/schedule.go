package coordinator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Schedule periods (Schedule.Every).
const (
	EveryDay   = "daily"
	EveryWeek  = "weekly"
	EveryMonth = "monthly"
)

// scheduleTick is how often RunSchedules looks for a due schedule when its
// clock has no tick channel.
const scheduleTick = time.Minute

// RequesterSchedulePrefix prefixes the requested_by of scheduled rollups:
// "schedule/weekly".
const RequesterSchedulePrefix = "schedule/"

// Schedule is a rollup the coordinator runs by itself for the previous
// complete calendar period, in UTC: daily for yesterday, weekly for the
// previous week Monday to Sunday, monthly for the previous month. In YAML:
//
//	schedules:
//	  - {name: weekly, every: weekly, metrics: [arrests], group_by: [member], after: 6h}
type Schedule struct {
	// Name names the schedule; its rollups are requested by "schedule/<name>".
	// 1-32 characters of [a-z0-9_-], starting with a letter or digit.
	Name string `yaml:"name"`
	// Every is daily, weekly or monthly.
	Every string `yaml:"every"`
	// Metrics to count, by name; empty means every metric.
	Metrics []string `yaml:"metrics"`
	// GroupBy lists dimensions by name (member, month, offence, channel, victim_age).
	GroupBy []string `yaml:"group_by"`
	// After delays the run past the period's end (UTC midnight), so that
	// ministries can load the period's last day first. 0 runs at once.
	After time.Duration `yaml:"after"`
}

var scheduleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate checks a schedule.
func (s Schedule) Validate() error {
	if !scheduleNameRE.MatchString(s.Name) {
		return fmt.Errorf("schedule name %s: want 1-32 characters of a-z, 0-9, '_' or '-', as in weekly", echo.Quote(s.Name))
	}
	switch s.Every {
	case EveryDay, EveryWeek, EveryMonth:
	default:
		return fmt.Errorf("schedule %s: every %s: want daily, weekly or monthly", s.Name, echo.Quote(s.Every))
	}
	if s.After < 0 {
		return fmt.Errorf("schedule %s: after %v must not be negative", s.Name, s.After)
	}
	_, err := s.spec(time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC))
	return err
}

// ValidateSchedules checks every schedule and refuses duplicate names.
func ValidateSchedules(schedules []Schedule) error {
	seen := map[string]bool{}
	for i, s := range schedules {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("schedules[%d]: %w", i, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("schedules[%d]: schedule %s is declared twice", i, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// Period returns the inclusive first and last day of the latest complete
// period of s at now: the one that ended at the last UTC midnight (of a day,
// a Monday, a month's first) at or before now minus s.After.
func (s Schedule) Period(now time.Time) (from, to time.Time) {
	ref := now.Add(-s.After).UTC()
	today := time.Date(ref.Year(), ref.Month(), ref.Day(), 0, 0, 0, 0, time.UTC)
	var end time.Time // the period's exclusive end
	switch s.Every {
	case EveryWeek:
		end = today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7)) // Monday
		from = end.AddDate(0, 0, -7)
	case EveryMonth:
		end = time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
		from = end.AddDate(0, -1, 0)
	default:
		end = today
		from = end.AddDate(0, 0, -1)
	}
	return from, end.AddDate(0, 0, -1)
}

// spec is the rollup spec of s at now.
func (s Schedule) spec(now time.Time) (*fedreportv1.RollupSpec, error) {
	from, to := s.Period(now)
	spec := &fedreportv1.RollupSpec{From: from.Format(dateLayout), To: to.Format(dateLayout)}
	for _, name := range s.Metrics {
		m, err := records.ParseMetric(name)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: metrics: %w", s.Name, err)
		}
		spec.Metrics = append(spec.Metrics, m)
	}
	for _, name := range s.GroupBy {
		d, err := records.ParseDimension(name)
		if err != nil {
			return nil, fmt.Errorf("schedule %s: group_by: %w", s.Name, err)
		}
		spec.GroupBy = append(spec.GroupBy, d)
	}
	if err := ValidateSpec(spec); err != nil {
		return nil, fmt.Errorf("schedule %s: %w", s.Name, err)
	}
	return spec, nil
}

// Clock drives RunSchedules. Tests inject both fields; zero fields mean the
// wall clock, looked at every minute.
type Clock struct {
	// Now returns the current time.
	Now func() time.Time
	// Tick delivers a value whenever schedules should be looked at.
	Tick <-chan time.Time
}

// RunSchedules runs Config.Schedules until ctx is done. At start and on
// every tick it runs, one after another, each schedule whose latest complete
// period has not been run yet, as a rollup stored like a manual one and
// requested by "schedule/<name>". The last period run is stored per
// schedule, so a restart neither repeats a period nor skips the latest one;
// periods missed while the coordinator was down are not caught up beyond the
// latest. It returns nil when ctx is done or the coordinator shuts down.
func (c *Coordinator) RunSchedules(ctx context.Context, clock Clock) error {
	if len(c.schedules) == 0 {
		return nil
	}
	if clock.Now == nil {
		clock.Now = time.Now
	}
	if clock.Tick == nil {
		t := time.NewTicker(scheduleTick)
		defer t.Stop()
		clock.Tick = t.C
	}
	for {
		if err := c.runDueSchedules(ctx, clock.Now()); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clock.Tick:
		}
	}
}

// runDueSchedules runs every schedule due at now. A rollup that is stored,
// whatever its state, marks its period done; the operator reruns a failed one.
func (c *Coordinator) runDueSchedules(ctx context.Context, now time.Time) error {
	for _, s := range c.schedules {
		if ctx.Err() != nil {
			return nil
		}
		spec, err := s.spec(now)
		if err != nil {
			return err // Open validated every schedule
		}
		last, err := c.store.scheduleLast(s.Name)
		if err != nil {
			return err
		}
		if spec.GetFrom() <= last {
			continue
		}
		r, err := c.StartRollup(ctx, spec, RequesterSchedulePrefix+s.Name)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", s.Name, err)
		}
		if err := c.store.setScheduleLast(s.Name, spec.GetFrom()); err != nil {
			return err
		}
		c.log.Info("scheduled rollup stored", "schedule", s.Name, "id", r.GetId(),
			"from", spec.GetFrom(), "to", spec.GetTo(), "state", rollupStateName(r.GetState()))
	}
	return nil
}

// scheduleLast returns the first day of the last period run for schedule
// name, "" if none.
func (s *store) scheduleLast(name string) (string, error) {
	var last string
	err := s.db.View(func(tx *bolt.Tx) error {
		last = string(tx.Bucket(bucketSchedules).Get([]byte(name))) // string() copies
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read schedule %s: %w", name, err)
	}
	return last, nil
}

// setScheduleLast records from as the first day of the last period run for
// schedule name.
func (s *store) setScheduleLast(name, from string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSchedules).Put([]byte(name), []byte(from))
	})
	if err != nil {
		return fmt.Errorf("record schedule %s: %w", name, err)
	}
	return nil
}
