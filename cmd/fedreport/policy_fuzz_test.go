package main

import (
	"testing"

	"github.com/isa-alliance/fedreport/node"
)

// FuzzParsePolicyFlags feeds --tables and --periods (also the tables and
// periods keys of a node's --config) with arbitrary text. Parsing must never
// panic, and what parses must either open as a policy or be refused with an
// error, never accepted half-way: a node must not start on a policy it
// misread.
func FuzzParsePolicyFlags(f *testing.F) {
	f.Add("offence;channel;victim_age", "isa-2020=2020-01-01..2020-09-30,phase-1=2020-01-01..2020-05-30")
	f.Add("none", "")
	f.Add("offence,channel", "a=2020-01-01..2020-03-31,b=2020-03-01..2020-04-30")
	f.Add(";;", "=..,x=2020-02-30..2020-01-01")
	f.Fuzz(func(t *testing.T, tables, periodsFlag string) {
		ts, err := parseTables(tables)
		if err != nil {
			return
		}
		ps, err := parsePeriods(periodsFlag)
		if err != nil {
			return
		}
		p := node.Policy{Tables: ts, Periods: ps}
		if err := p.Validate(); err != nil {
			return
		}
		if len(p.Proto().GetTables()) != len(ts) {
			t.Fatalf("policy of %q advertises %d tables, want %d", tables, len(p.Proto().GetTables()), len(ts))
		}
	})
}
