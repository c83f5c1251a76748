package records

import (
	"slices"
	"testing"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestNamesRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range Metrics() {
		got, err := ParseMetric(MetricName(m))
		if err != nil || got != m {
			t.Errorf("ParseMetric(MetricName(%v)): got %v, %v", m, got, err)
		}
	}
	for _, o := range Offences() {
		got, err := ParseOffence(OffenceName(o))
		if err != nil || got != o {
			t.Errorf("ParseOffence(OffenceName(%v)): got %v, %v", o, got, err)
		}
	}
	for _, c := range Channels() {
		got, err := ParseChannel(ChannelName(c))
		if err != nil || got != c {
			t.Errorf("ParseChannel(ChannelName(%v)): got %v, %v", c, got, err)
		}
	}
	for _, a := range VictimAges() {
		got, err := ParseVictimAge(VictimAgeName(a))
		if err != nil || got != a {
			t.Errorf("ParseVictimAge(VictimAgeName(%v)): got %v, %v", a, got, err)
		}
	}
	for d := fedreportv1.Dimension(1); ValidDimension(d); d++ {
		got, err := ParseDimension(DimensionName(d))
		if err != nil || got != d {
			t.Errorf("ParseDimension(DimensionName(%v)): got %v, %v", d, got, err)
		}
	}
}

func TestParseNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  func() (int32, error)
		want int32
		err  string
	}{
		{"a metric in lower case", wrap(ParseMetric, "victims_identified"), 2, ""},
		{"a metric in upper case with spaces", wrap(ParseMetric, " SITES_BLOCKED "), 3, ""},
		{"a misspelt metric", wrap(ParseMetric, "arrest"), 0, `metric "arrest" is not a metric (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received)`},
		{"an empty metric", wrap(ParseMetric, ""), 0, `metric "" is required (want arrests, victims_identified, sites_blocked, judicial_referrals, reports_received)`},
		{"an empty offence is unknown", wrap(ParseOffence, ""), 0, ""},
		{"offence unknown is unspecified", wrap(ParseOffence, "unknown"), 0, ""},
		{"a misspelt offence", wrap(ParseOffence, "groomin"), 0, `offence "groomin" is not an offence (want csam_distribution, csam_production, grooming, sextortion, live_streaming, other, or empty)`},
		{"channel p2p", wrap(ParseChannel, "p2p"), 6, ""},
		{"a misspelt channel", wrap(ParseChannel, "web"), 0, `channel "web" is not a channel (want website, app, social_media, messaging, darknet, p2p, other, or empty)`},
		{"age band 12-14", wrap(ParseVictimAge, "12-14"), 3, ""},
		{"an age, not a band", wrap(ParseVictimAge, "13"), 0, `victim_age "13" is not an age band (want 0-5, 6-11, 12-14, 15-17, or empty)`},
		{"dimension victim_age", wrap(ParseDimension, "victim_age"), 5, ""},
		{"a misspelt dimension", wrap(ParseDimension, "months"), 0, `dimension "months" is not a dimension (want member, month, offence, channel, victim_age)`},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%s: got error %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %d, %v, want %d", tt.name, got, err, tt.want)
		}
	}
}

func wrap[E ~int32](f func(string) (E, error), s string) func() (int32, error) {
	return func() (int32, error) {
		v, err := f(s)
		return int32(v), err
	}
}

func TestParseLists(t *testing.T) {
	t.Parallel()
	ms, err := ParseMetrics("arrests,sites_blocked")
	if err != nil || !slices.Equal(ms, []fedreportv1.Metric{1, 3}) {
		t.Errorf("ParseMetrics: got %v, %v", ms, err)
	}
	if ms, err := ParseMetrics(""); err != nil || ms != nil {
		t.Errorf("ParseMetrics(empty): got %v, %v, want nil, nil", ms, err)
	}
	if _, err := ParseMetrics("arrests,arrests"); err == nil || err.Error() != `metric "arrests" is listed twice` {
		t.Errorf("ParseMetrics(twice): got %v", err)
	}
	ds, err := ParseDimensions("member,month")
	if err != nil || !slices.Equal(ds, []fedreportv1.Dimension{1, 2}) {
		t.Errorf("ParseDimensions: got %v, %v", ds, err)
	}
	if _, err := ParseDimensions("month,day"); err == nil {
		t.Errorf("ParseDimensions(day): got nil error")
	}
	if got := MetricNames(ms); got != "arrests,sites_blocked" {
		t.Errorf("MetricNames: got %q", got)
	}
	if got := DimensionNames(ds); got != "member,month" {
		t.Errorf("DimensionNames: got %q", got)
	}
}
