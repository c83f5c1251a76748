package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The operation's published results and its two phases (DESIGN.md).
var (
	demoMembers = []string{"FR", "AE", "IT", "SG", "ES", "BH", "SN", "GB", "AU"}
	demoPhases  = []struct{ name, from, to string }{
		{"phase 1", "2020-01-01", "2020-05-30"},
		{"phase 2 (extension)", "2020-06-01", "2020-09-30"},
		{"whole operation", "2020-01-01", "2020-09-30"},
	}
)

// demoShares is each member's part of every metric, per phase: the three
// published metrics add up to 771, 549 and 580 across the alliance, and no
// member's count in any phase is below the default k of 5, so every rollup
// of the demo is exact.
var demoShares = map[fedreportv1.Metric][2][]uint32{
	//                                                  FR  AE  IT  SG  ES  BH  SN  GB  AU
	fedreportv1.Metric_METRIC_ARRESTS:            {{96, 57, 72, 36, 66, 24, 21, 54, 37}, {64, 38, 48, 24, 44, 16, 14, 36, 24}},
	fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED: {{66, 36, 51, 27, 48, 18, 17, 39, 27}, {44, 24, 34, 18, 32, 12, 12, 26, 18}},
	fedreportv1.Metric_METRIC_SITES_BLOCKED:      {{72, 51, 42, 33, 45, 21, 12, 42, 30}, {48, 34, 28, 22, 30, 14, 8, 28, 20}},
	fedreportv1.Metric_METRIC_JUDICIAL_REFERRALS: {{80, 45, 60, 30, 55, 20, 17, 45, 31}, {52, 30, 40, 20, 36, 13, 11, 30, 20}},
	fedreportv1.Metric_METRIC_REPORTS_RECEIVED:   {{900, 420, 610, 300, 540, 150, 95, 700, 380}, {600, 300, 410, 210, 360, 100, 60, 470, 250}},
}

// demoRecords makes member's synthetic records: one record per fact for the
// published metrics, daily tallies (quantity > 1) for reports received,
// spread over every offence, channel and victim age band, dated inside the
// phases (never 2020-05-31, which lies between them).
func demoRecords(member string, seed uint64) ([]*fedreportv1.Record, error) {
	idx := -1
	for i, m := range demoMembers {
		if m == member {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("demo has no member %s", member)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(idx)+1))
	var out []*fedreportv1.Record
	seq := 0
	for _, metric := range []fedreportv1.Metric{
		fedreportv1.Metric_METRIC_ARRESTS, fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED, fedreportv1.Metric_METRIC_SITES_BLOCKED,
		fedreportv1.Metric_METRIC_JUDICIAL_REFERRALS, fedreportv1.Metric_METRIC_REPORTS_RECEIVED,
	} {
		for phase := range 2 {
			from, _ := time.Parse(time.DateOnly, demoPhases[phase].from)
			to, _ := time.Parse(time.DateOnly, demoPhases[phase].to)
			days := int(to.Sub(from).Hours()/24) + 1
			remaining := demoShares[metric][phase][idx]
			for remaining > 0 {
				q := uint32(1)
				if metric == fedreportv1.Metric_METRIC_REPORTS_RECEIVED {
					q = min(remaining, 1+rng.Uint32N(12))
				}
				remaining -= q
				seq++
				r := &fedreportv1.Record{
					RecordId: fmt.Sprintf("%s-2020-%06d", member, seq),
					Metric:   metric,
					Date:     from.AddDate(0, 0, rng.IntN(days)).Format(time.DateOnly),
					Offence:  fedreportv1.Offence(rng.IntN(7)), // 0 is "unknown"
					Channel:  fedreportv1.Channel(rng.IntN(8)), // 0 is "unknown"
					Quantity: q,
				}
				if metric == fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED {
					r.VictimAge = fedreportv1.VictimAge(rng.IntN(5))
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// demoPolicy is every demo node's disclosure policy: the default one, with
// the operation and its phases as release periods, so that the rollups of
// both phases and of the whole operation are each one release cell.
func demoPolicy() node.Policy {
	p := node.DefaultPolicy()
	for _, ph := range []struct{ name, from, to string }{
		{"isa-2020", "2020-01-01", "2020-09-30"},
		{"phase-1", demoPhases[0].from, demoPhases[0].to},
		{"phase-2", demoPhases[1].from, demoPhases[1].to},
	} {
		from, _ := records.ParseDate(ph.from)
		to, _ := records.ParseDate(ph.to)
		p.Periods = append(p.Periods, periods.Period{Name: ph.name, From: from, To: to})
	}
	return p
}
