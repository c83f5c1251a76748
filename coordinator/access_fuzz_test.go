package coordinator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// FuzzValidateSpec feeds ValidateSpec (every StartRollup, schedule and
// member Aggregate goes through it) and aggregateSpec, the member API's
// translation of an AggregateRequest, with arbitrary dates and enum values.
// Neither may panic; a refusal is a *ValidationError whose every violation
// names a field of the request; an accepted spec is well formed and turns
// into a member request without the member dimension.
func FuzzValidateSpec(f *testing.F) {
	f.Add("2020-01-01", "2020-09-30", []byte{}, []byte{})
	f.Add("2020-01-01", "2020-09-30", []byte{1, 2, 3}, []byte{1, 2})
	f.Add("2020-09-30", "2020-01-01", []byte{1, 1}, []byte{2, 2})
	f.Add("2020-02-30", "20200101", []byte{0, 6, 255}, []byte{0, 6, 128})
	f.Add("", "", []byte{1, 2, 3, 4, 5, 1}, []byte{1, 2, 3, 4, 5, 1})
	f.Fuzz(func(t *testing.T, from, to string, metrics, groupBy []byte) {
		spec := &fedreportv1.RollupSpec{From: from, To: to}
		for _, b := range metrics {
			spec.Metrics = append(spec.Metrics, fedreportv1.Metric(int8(b)))
		}
		for _, b := range groupBy {
			spec.GroupBy = append(spec.GroupBy, fedreportv1.Dimension(int8(b)))
		}
		err := ValidateSpec(spec)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Violations) == 0 {
				t.Fatalf("got %T %v, want a *ValidationError with violations", err, err)
			}
			for _, v := range verr.Violations {
				if !strings.HasPrefix(v.Field, "spec.") || v.Description == "" {
					t.Fatalf("violation %+v does not name a spec field and say what is wrong", v)
				}
			}
		} else {
			fromT, err1 := time.Parse(dateLayout, from)
			toT, err2 := time.Parse(dateLayout, to)
			if err1 != nil || err2 != nil || toT.Before(fromT) {
				t.Fatalf("accepted from %q to %q", from, to)
			}
			for i, m := range spec.GetMetrics() {
				if !records.ValidMetric(m) || slices.Contains(spec.GetMetrics()[:i], m) {
					t.Fatalf("accepted metrics %v", spec.GetMetrics())
				}
			}
			for i, d := range spec.GetGroupBy() {
				if !records.ValidDimension(d) || slices.Contains(spec.GetGroupBy()[:i], d) {
					t.Fatalf("accepted group_by %v", spec.GetGroupBy())
				}
			}
			req := memberRequest(spec, "R-1", timestamppb.Now())
			if len(req.GetMetrics()) == 0 || slices.Contains(req.GetGroupBy(), fedreportv1.Dimension_DIMENSION_MEMBER) {
				t.Fatalf("member request %v: want explicit metrics and no member dimension", req)
			}
		}

		// The same fields as a member API AggregateRequest.
		aspec, aerr := aggregateSpec(&fedreportv1.AggregateRequest{From: from, To: to, Metrics: spec.GetMetrics(), GroupBy: spec.GetGroupBy()})
		byMember := slices.Contains(spec.GetGroupBy(), fedreportv1.Dimension_DIMENSION_MEMBER)
		switch {
		case aerr == nil && (err != nil || byMember):
			t.Fatalf("aggregateSpec accepted what a rollup refuses or a split by member: %v", aspec)
		case aerr != nil && err == nil && !byMember:
			t.Fatalf("aggregateSpec refused a valid request: %v", aerr)
		case aerr != nil:
			var verr *ValidationError
			if !errors.As(aerr, &verr) {
				t.Fatalf("aggregateSpec: got %T, want a *ValidationError", aerr)
			}
			for _, v := range verr.Violations {
				if strings.HasPrefix(v.Field, "spec.") {
					t.Fatalf("aggregateSpec violation %q names the spec, not the request's field", v.Field)
				}
			}
		}
	})
}
