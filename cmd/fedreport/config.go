package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/yamlconf"
)

// loadStrictYAML decodes a YAML config file into v, refusing unknown keys so
// that a typo never silently falls back to a default.
func loadStrictYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := yamlconf.Decode(b, v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// topLevelKeys returns the top-level keys the YAML file at path sets, so
// that a key set to its zero value can be told from one left out.
func topLevelKeys(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var m map[string]yaml.Node
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	set := make(map[string]bool, len(m))
	for k := range m {
		set[k] = true
	}
	return set, nil
}

// setFromConfig applies config values to flags the command line did not set,
// so flags always win over the file.
func setFromConfig(fs *pflag.FlagSet, values map[string]string) error {
	for name, v := range values {
		if v == "" || fs.Changed(name) {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("config %s: %w", name, err)
		}
	}
	return nil
}

// rateOptions are the flags of one method's per-identity rate limit
// (internal/grpcsrv): a token bucket of burst calls, refilled at rate calls
// a second, per caller identity. Rate 0 lifts the limit.
type rateOptions struct {
	flag   string // flag prefix: "aggregate" gives --aggregate-rate, --aggregate-burst
	method string // full gRPC method name
	rate   float64
	burst  int
}

// newRateOptions returns the options of method with grpcsrv's defaults.
func newRateOptions(flag, method string) rateOptions {
	def := grpcsrv.DefaultRates[method]
	return rateOptions{flag: flag, method: method, rate: def.PerSecond, burst: def.Burst}
}

// AddFlags adds --<flag>-rate and --<flag>-burst; call names the method and
// who the identities are.
func (r *rateOptions) AddFlags(fs *pflag.FlagSet, call, who string) {
	fs.Float64Var(&r.rate, r.flag+"-rate", r.rate, fmt.Sprintf(
		"rate limit: %s calls a second that each %s may make, sustained; beyond it the call is refused with RESOURCE_EXHAUSTED saying when to retry (0: no limit)", call, who))
	fs.IntVar(&r.burst, r.flag+"-burst", r.burst, fmt.Sprintf(
		"rate limit: %s calls that each %s may make at once, before --%s-rate applies (at least 1)", call, who, r.flag))
}

// validate says what to fix in a rate or burst from the flags or the file.
func (r *rateOptions) validate() error {
	key := strings.ReplaceAll(r.flag, "-", "_")
	if math.IsNaN(r.rate) || math.IsInf(r.rate, 0) || r.rate < 0 {
		return fmt.Errorf("--%s-rate %g (%s_rate in --config): give the calls a second allowed to each identity, a number above 0, or 0 for no limit", r.flag, r.rate, key)
	}
	if r.rate > 0 && r.burst < 1 {
		return fmt.Errorf("--%s-burst %d (%s_burst in --config): give at least 1, the calls an identity may make at once; to lift the limit, set --%s-rate 0 instead", r.flag, r.burst, key, r.flag)
	}
	return nil
}

// rateLimits returns server limits whose rates are grpcsrv.DefaultRates with
// the given methods' rates in place (or removed, for rate 0).
func rateLimits(rs ...*rateOptions) grpcsrv.Limits {
	rates := maps.Clone(grpcsrv.DefaultRates)
	for _, r := range rs {
		if r.rate == 0 {
			delete(rates, r.method)
			continue
		}
		rates[r.method] = grpcsrv.Rate{PerSecond: r.rate, Burst: r.burst}
	}
	return grpcsrv.Limits{Rates: rates}
}

// optionalNumber is the flag value of an optional number of a config file:
// "" (not set) when the key is absent, so that 0 can mean 0.
func optionalNumber[N float64 | int](v *N) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(*v)
}

// connOptions are the connection caps of a server's mTLS listeners
// (grpcsrv.LimitListener). 0 lifts a cap.
type connOptions struct {
	max       int
	perSource int
}

// AddFlags adds --max-connections and --max-connections-per-source.
func (c *connOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.max, "max-connections", grpcsrv.DefaultMaxConnections,
		"open connections each mTLS listener keeps at most; one more is closed as it is accepted, and counted in the metrics (0: no cap)")
	fs.IntVar(&c.perSource, "max-connections-per-source", grpcsrv.DefaultMaxConnectionsPerSource,
		"open connections each mTLS listener keeps at most from one source IP address; one more is closed as it is accepted (0: no cap)")
}

// validate says what to fix in a cap from the flags or the file.
func (c *connOptions) validate() error {
	for _, f := range []struct {
		flag string
		v    int
	}{{"max-connections", c.max}, {"max-connections-per-source", c.perSource}} {
		if f.v < 0 {
			return fmt.Errorf("--%s %d (%s in --config): give the connections allowed, a number above 0, or 0 for no cap", f.flag, f.v, strings.ReplaceAll(f.flag, "-", "_"))
		}
	}
	return nil
}

// apply sets the caps in l; 0 is no cap, which l says with -1.
func (c *connOptions) apply(l *grpcsrv.Limits) {
	off := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	l.MaxConnections, l.MaxConnectionsPerSource = off(c.max), off(c.perSource)
}
