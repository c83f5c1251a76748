// Package records is fedreport's domain vocabulary: the names of metrics and
// dimensions, the validation rules for a record (DESIGN.md "Domain"), the
// streaming parsers for the CSV and JSON Lines files ministries export, and a
// synthetic record generator for tests and demos.
//
// Names are the lower-case words used in files, on the command line and in
// aggregate cells ("arrests", "grooming", "12-14"); the proto enums are the
// wire form. Every parse error says what is allowed.
package records

import (
	"fmt"
	"strings"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Unknown is the name of an unspecified offence, channel or victim age.
const Unknown = "unknown"

// Names indexed by enum number. Index 0 of the optional dimensions is Unknown;
// index 0 of metrics and dimensions is never valid and stays empty.
var (
	metricNames    = [...]string{"", "arrests", "victims_identified", "sites_blocked", "judicial_referrals", "reports_received"}
	offenceNames   = [...]string{Unknown, "csam_distribution", "csam_production", "grooming", "sextortion", "live_streaming", "other"}
	channelNames   = [...]string{Unknown, "website", "app", "social_media", "messaging", "darknet", "p2p", "other"}
	victimAgeNames = [...]string{Unknown, "0-5", "6-11", "12-14", "15-17"}
	dimensionNames = [...]string{"", "member", "month", "offence", "channel", "victim_age"}
)

// want lists are precomputed so that error paths do not rebuild them.
var (
	metricWant    = strings.Join(metricNames[1:], ", ")
	offenceWant   = strings.Join(offenceNames[1:], ", ") + ", or empty"
	channelWant   = strings.Join(channelNames[1:], ", ") + ", or empty"
	victimAgeWant = strings.Join(victimAgeNames[1:], ", ") + ", or empty"
	dimensionWant = strings.Join(dimensionNames[1:], ", ")
)

// Metrics returns every metric in enum order.
func Metrics() []fedreportv1.Metric {
	out := make([]fedreportv1.Metric, 0, len(metricNames)-1)
	for i := 1; i < len(metricNames); i++ {
		out = append(out, fedreportv1.Metric(i))
	}
	return out
}

// Offences returns every offence in enum order, starting with unspecified (unknown).
func Offences() []fedreportv1.Offence {
	out := make([]fedreportv1.Offence, len(offenceNames))
	for i := range out {
		out[i] = fedreportv1.Offence(i)
	}
	return out
}

// Channels returns every channel in enum order, starting with unspecified (unknown).
func Channels() []fedreportv1.Channel {
	out := make([]fedreportv1.Channel, len(channelNames))
	for i := range out {
		out[i] = fedreportv1.Channel(i)
	}
	return out
}

// VictimAges returns every victim age band in enum order, starting with unspecified (unknown).
func VictimAges() []fedreportv1.VictimAge {
	out := make([]fedreportv1.VictimAge, len(victimAgeNames))
	for i := range out {
		out[i] = fedreportv1.VictimAge(i)
	}
	return out
}

// MetricName returns the lower-case name of m ("arrests"), "unspecified" for
// the zero value and "metric(N)" for a number this build does not know.
func MetricName(m fedreportv1.Metric) string {
	if m > 0 && int(m) < len(metricNames) {
		return metricNames[m]
	}
	if m == 0 {
		return "unspecified"
	}
	return fmt.Sprintf("metric(%d)", int32(m))
}

// OffenceName returns the lower-case name of o; unspecified is "unknown".
func OffenceName(o fedreportv1.Offence) string {
	if o >= 0 && int(o) < len(offenceNames) {
		return offenceNames[o]
	}
	return fmt.Sprintf("offence(%d)", int32(o))
}

// ChannelName returns the lower-case name of c; unspecified is "unknown".
func ChannelName(c fedreportv1.Channel) string {
	if c >= 0 && int(c) < len(channelNames) {
		return channelNames[c]
	}
	return fmt.Sprintf("channel(%d)", int32(c))
}

// VictimAgeName returns the age band of a ("0-5"); unspecified is "unknown".
func VictimAgeName(a fedreportv1.VictimAge) string {
	if a >= 0 && int(a) < len(victimAgeNames) {
		return victimAgeNames[a]
	}
	return fmt.Sprintf("victim_age(%d)", int32(a))
}

// DimensionName returns the lower-case name of d ("month"), "unspecified" for
// the zero value.
func DimensionName(d fedreportv1.Dimension) string {
	if d > 0 && int(d) < len(dimensionNames) {
		return dimensionNames[d]
	}
	if d == 0 {
		return "unspecified"
	}
	return fmt.Sprintf("dimension(%d)", int32(d))
}

// ValidMetric reports whether m is a metric this build knows (not unspecified).
func ValidMetric(m fedreportv1.Metric) bool { return m > 0 && int(m) < len(metricNames) }

// ValidOffence reports whether o is a known offence or unspecified.
func ValidOffence(o fedreportv1.Offence) bool { return o >= 0 && int(o) < len(offenceNames) }

// ValidChannel reports whether c is a known channel or unspecified.
func ValidChannel(c fedreportv1.Channel) bool { return c >= 0 && int(c) < len(channelNames) }

// ValidVictimAge reports whether a is a known age band or unspecified.
func ValidVictimAge(a fedreportv1.VictimAge) bool { return a >= 0 && int(a) < len(victimAgeNames) }

// ValidDimension reports whether d is a dimension this build knows (not unspecified).
func ValidDimension(d fedreportv1.Dimension) bool { return d > 0 && int(d) < len(dimensionNames) }

// lookup finds s in names, first exactly (the hot path: files are written in
// lower case), then ignoring case and surrounding spaces.
func lookup(names []string, s string) (int, bool) {
	for i, n := range names {
		if n == s && n != "" {
			return i, true
		}
	}
	t := strings.TrimSpace(s)
	if t == s && !hasUpper(s) {
		return 0, false
	}
	t = strings.ToLower(t)
	for i, n := range names {
		if n == t && n != "" {
			return i, true
		}
	}
	return 0, false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// ParseMetric parses a metric name such as "arrests".
func ParseMetric(s string) (fedreportv1.Metric, error) {
	if i, ok := lookup(metricNames[:], s); ok {
		return fedreportv1.Metric(i), nil
	}
	if strings.TrimSpace(s) == "" {
		return 0, &FieldError{Field: "metric", Value: s, Problem: "is required (want " + metricWant + ")"}
	}
	return 0, &FieldError{Field: "metric", Value: s, Problem: "is not a metric (want " + metricWant + ")"}
}

// ParseOffence parses an offence name; empty and "unknown" give unspecified.
func ParseOffence(s string) (fedreportv1.Offence, error) {
	if s == "" {
		return fedreportv1.Offence_OFFENCE_UNSPECIFIED, nil
	}
	if i, ok := lookup(offenceNames[:], s); ok {
		return fedreportv1.Offence(i), nil
	}
	if strings.TrimSpace(s) == "" {
		return fedreportv1.Offence_OFFENCE_UNSPECIFIED, nil
	}
	return 0, &FieldError{Field: "offence", Value: s, Problem: "is not an offence (want " + offenceWant + ")"}
}

// ParseChannel parses a channel name; empty and "unknown" give unspecified.
func ParseChannel(s string) (fedreportv1.Channel, error) {
	if s == "" {
		return fedreportv1.Channel_CHANNEL_UNSPECIFIED, nil
	}
	if i, ok := lookup(channelNames[:], s); ok {
		return fedreportv1.Channel(i), nil
	}
	if strings.TrimSpace(s) == "" {
		return fedreportv1.Channel_CHANNEL_UNSPECIFIED, nil
	}
	return 0, &FieldError{Field: "channel", Value: s, Problem: "is not a channel (want " + channelWant + ")"}
}

// ParseVictimAge parses an age band such as "12-14"; empty and "unknown" give unspecified.
func ParseVictimAge(s string) (fedreportv1.VictimAge, error) {
	if s == "" {
		return fedreportv1.VictimAge_VICTIM_AGE_UNSPECIFIED, nil
	}
	if i, ok := lookup(victimAgeNames[:], s); ok {
		return fedreportv1.VictimAge(i), nil
	}
	if strings.TrimSpace(s) == "" {
		return fedreportv1.VictimAge_VICTIM_AGE_UNSPECIFIED, nil
	}
	return 0, &FieldError{Field: "victim_age", Value: s, Problem: "is not an age band (want " + victimAgeWant + ")"}
}

// ParseDimension parses a dimension name such as "month".
func ParseDimension(s string) (fedreportv1.Dimension, error) {
	if i, ok := lookup(dimensionNames[:], s); ok {
		return fedreportv1.Dimension(i), nil
	}
	return 0, &FieldError{Field: "dimension", Value: s, Problem: "is not a dimension (want " + dimensionWant + ")"}
}

// ParseMetrics parses a comma-separated list of metric names ("arrests,sites_blocked").
// An empty string gives nil, which requests mean as "every metric". A name
// listed twice is an error.
func ParseMetrics(s string) ([]fedreportv1.Metric, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []fedreportv1.Metric
	for part := range strings.SplitSeq(s, ",") {
		m, err := ParseMetric(part)
		if err != nil {
			return nil, err
		}
		for _, seen := range out {
			if seen == m {
				return nil, &FieldError{Field: "metric", Value: part, Problem: "is listed twice"}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// ParseDimensions parses a comma-separated list of dimension names
// ("member,month"). An empty string gives nil. A name listed twice is an error.
func ParseDimensions(s string) ([]fedreportv1.Dimension, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []fedreportv1.Dimension
	for part := range strings.SplitSeq(s, ",") {
		d, err := ParseDimension(part)
		if err != nil {
			return nil, err
		}
		for _, seen := range out {
			if seen == d {
				return nil, &FieldError{Field: "dimension", Value: part, Problem: "is listed twice"}
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// MetricNames returns the names of ms joined by commas ("arrests,sites_blocked").
func MetricNames(ms []fedreportv1.Metric) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = MetricName(m)
	}
	return strings.Join(parts, ",")
}

// DimensionNames returns the names of ds joined by commas ("member,month").
func DimensionNames(ds []fedreportv1.Dimension) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = DimensionName(d)
	}
	return strings.Join(parts, ",")
}
