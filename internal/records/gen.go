package records

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// recordID returns the synthetic record id of a member's n-th record:
// "FR-000000001".
func recordID(member string, n uint64) string {
	b := make([]byte, 0, len(member)+1+9)
	b = append(b, member...)
	b = append(b, '-')
	s := strconv.FormatUint(n, 10)
	for i := len(s); i < 9; i++ {
		b = append(b, '0')
	}
	b = append(b, s...)
	return string(b)
}

// SeededRecordID returns the id `fedreport gen --seed` gives a member's
// n-th record: "FR-s7-000000001", so that records of different seeds never
// share an id.
func SeededRecordID(member string, seed int64, n uint64) string {
	id := recordID(member, n)
	return id[:len(member)+1] + "s" + strconv.FormatInt(seed, 10) + "-" + id[len(member)+1:]
}

// generator draws the parts of a synthetic record.
type generator struct {
	rng      *rand.Rand
	from, to uint32
}

func newGenerator(seed int64, from, to time.Time) (*generator, error) {
	f, t := DayOf(from), DayOf(to)
	if f < earliestDay {
		return nil, fmt.Errorf("generate from %s: before %s", DateString(f), EarliestDate)
	}
	if t < f {
		return nil, fmt.Errorf("generate from %s to %s: the end is before the start", DateString(f), DateString(t))
	}
	return &generator{rng: rand.New(rand.NewPCG(uint64(seed), 0x5eed_f00d)), from: f, to: t}, nil
}

// fill sets every field but record_id and quantity. About one in ten records
// leaves offence or channel unknown, as real exports do.
func (g *generator) fill(r *fedreportv1.Record, m fedreportv1.Metric) {
	r.Metric = m
	r.Date = DateString(g.from + uint32(g.rng.IntN(int(g.to-g.from)+1)))
	r.Offence = fedreportv1.Offence(g.rng.IntN(len(offenceNames)))
	r.Channel = fedreportv1.Channel(g.rng.IntN(len(channelNames)))
	r.VictimAge = 0
	if m == fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED {
		r.VictimAge = fedreportv1.VictimAge(g.rng.IntN(len(victimAgeNames)))
	}
}

// Gen emits n synthetic records of member dated from..to (inclusive, by
// calendar date), with ids member-000000001 upwards, using every metric,
// offence, channel and age band. Most records have quantity 1, some are
// daily tallies of up to 20. The output depends only on the arguments.
// emit may keep the record it is given.
func Gen(member string, n int, seed int64, from, to time.Time, emit func(*fedreportv1.Record) error) error {
	g, err := newGenerator(seed, from, to)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		r := &fedreportv1.Record{RecordId: recordID(member, uint64(i)), Quantity: 1}
		g.fill(r, fedreportv1.Metric(1+g.rng.IntN(len(metricNames)-1)))
		if g.rng.IntN(10) == 0 {
			r.Quantity = uint32(2 + g.rng.IntN(19))
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	return nil
}

// GenTotals emits synthetic records of member whose quantities add up exactly
// to totals (per metric), one record per fact, ids numbered from first. It
// returns the next unused id number. Metrics are emitted in enum order.
func GenTotals(member string, totals map[fedreportv1.Metric]uint64, first uint64, seed int64, from, to time.Time, emit func(*fedreportv1.Record) error) (uint64, error) {
	g, err := newGenerator(seed, from, to)
	if err != nil {
		return first, err
	}
	next := first
	for m := range totals {
		if !ValidMetric(m) {
			return first, errors.New("generate totals: " + MetricName(m) + " is not a metric")
		}
	}
	for _, m := range Metrics() {
		for range totals[m] {
			r := &fedreportv1.Record{RecordId: recordID(member, next), Quantity: 1}
			g.fill(r, m)
			next++
			if err := emit(r); err != nil {
				return next, err
			}
		}
	}
	return next, nil
}
