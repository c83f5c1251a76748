// Package attacker is an adversary of a node's disclosure promise, written
// apart from the node's release code so that it cannot share its mistakes.
//
// The promise (DESIGN.md "Disclosure policy and the protected release") is
// that no sequence of answers lets anyone derive a suppressed cell, exactly
// or by bounds, nor a small change between data versions. The attacker reads
// every answer from the node's disclosure log and nothing else of the node:
// it derives its own model of the hidden data from the requests and cells in
// the log, writes every disclosed cell as a linear constraint on that model,
// and computes by linear programming (gonum's simplex) the feasible range of
// every suppressed cell and of every change of a disclosed cell between
// consecutive data versions. A range that collapses to one value is a
// finding.
//
// The model's unknowns are inner cells: per data version and metric, an atom
// of time (the common refinement of every window in the log, cut at month
// boundaries where an answer was grouped by month) crossed with the
// dimensions the log groups by. Dimensions that no answer crosses are kept
// as separate margins per atom, tied by equal totals, which describes the
// same feasible set as their full cross with far fewer unknowns.
//
// The tests that use it may also hand it the ground truth, to judge which
// targets are sensitive (1..k-1 contributing records) and to play the
// worst-case attacker who knows more than the log (SideKnowledge). Side
// knowledge is only ever true of the data: it never makes a protected cell
// look pinned.
package attacker

import (
	"fmt"
	"math"
	"strings"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// SideKnowledge is what the attacker knows besides the disclosure log. The
// zero value is an attacker with the log alone.
type SideKnowledge struct {
	// Truth is the node's records at each data version that appears in
	// the log. With it, a target is a finding only when it is sensitive:
	// a suppressed cell of 1..k-1 contributing records, or a change of
	// 1..k-1 records. Without it, every suppressed cell and every change
	// to a non-zero value is judged sensitive.
	Truth map[uint64][]*fedreportv1.Record
	// SmallCells tells the attacker which suppressed cells are primary
	// (hold 1..k-1 records): it may assume such a cell is at least 1, and
	// at most k-1 when its value is. Needs Truth.
	SmallCells bool
	// Unchanged tells the attacker which inner cells no write touched
	// between consecutive data versions (as an operator who knows what was
	// ingested might): those cells keep one unknown across the versions.
	// Needs Truth.
	Unchanged bool
	// Cell tells which windows (inclusive days) are cells of the node's
	// release: a release period it advertises. An answer over another
	// window is a sum of cells (DESIGN.md: "answers are sums of release
	// cells"): it constrains the unknowns like any answer, but it is no
	// target of its own and SmallCells says nothing of it. nil: every
	// window is a cell.
	Cell func(from, to uint32) bool
}

// Kind is what a target is.
type Kind int

const (
	// KindCell is a suppressed (or pending) cell of one answer.
	KindCell Kind = iota
	// KindChange is the change of a disclosed cell between two
	// consecutive data versions in the log.
	KindChange
)

func (k Kind) String() string {
	if k == KindChange {
		return "change"
	}
	return "cell"
}

// Finding is a sensitive target whose feasible range is one value.
type Finding struct {
	Kind Kind
	// Description says what was derived, in the log's own words:
	// "v3 arrests 2020-03-31..2020-03-31 offence=grooming pinned to 2
	// (1 record; entries 4, 9)".
	Description string
	// Value is the one value the target can take.
	Value int64
	// Records is how many contributing records the target holds (a cell)
	// or how many records changed under it (a change), by the ground
	// truth; -1 without it.
	Records int
	// Entries are the disclosure log entries that disclosed the cell.
	Entries []uint64

	what string // the target, as the model names it
}

// Findings is the outcome of an attack.
type Findings struct {
	// Pinned are the findings, in log order.
	Pinned []Finding
	// Foreknown are targets the side knowledge alone pins, with nothing
	// disclosed: four 1-record months under a total an attacker knows to
	// be at most 4 are each 1, whatever a node publishes. No release can
	// protect them, so they are no findings; they are listed here so that
	// a test can say so.
	Foreknown []Finding
	// Targets is how many sensitive targets were examined; Skipped how
	// many targets the ground truth showed not to be sensitive.
	Targets, Skipped int
	// LPs is how many linear programs were solved; Fallbacks how many
	// of them lp.Simplex failed and the attacker's own tableau solved.
	LPs, Fallbacks int
	// The size of the model: data versions, atoms of time, unknowns
	// after presolve, constraint rows and independent blocks.
	Versions, Atoms, Unknowns, Rows, Blocks int
}

// String lists the findings, one a line, after a summary line.
func (f *Findings) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d findings (%d more pinned by the side knowledge alone): %d sensitive targets (%d not sensitive), %d LPs (%d on the fallback); model: %d versions, %d atoms, %d unknowns, %d rows, %d blocks\n",
		len(f.Pinned), len(f.Foreknown), f.Targets, f.Skipped, f.LPs, f.Fallbacks, f.Versions, f.Atoms, f.Unknowns, f.Rows, f.Blocks)
	for _, p := range f.Pinned {
		b.WriteString(p.Description)
		b.WriteByte('\n')
	}
	return b.String()
}

// Attack derives what the entries disclose under minimum cell count k and
// reports every sensitive target pinned to one value. An error means the
// log cannot be read, contradicts itself, or contradicts side.Truth (a
// node whose bounds do not hold the true value).
func Attack(entries []*fedreportv1.DisclosureEntry, k uint32, side SideKnowledge) (*Findings, error) {
	if (side.SmallCells || side.Unchanged) && side.Truth == nil {
		return nil, fmt.Errorf("attack: side knowledge of small or unchanged cells needs the ground truth")
	}
	m, err := buildModel(entries, k, side, false)
	if err != nil {
		return nil, fmt.Errorf("attack: %w", err)
	}
	s, err := newSolver(m)
	if err != nil {
		return nil, fmt.Errorf("attack: %w", err)
	}
	out := &Findings{
		Skipped:  m.skipped,
		Versions: len(m.versions),
		Atoms:    len(m.cuts) - 1,
		Unknowns: s.nFree,
		Rows:     len(s.rows),
		Blocks:   len(s.blocks),
	}
	for _, t := range s.targets {
		out.Targets++
		lo, hi, err := s.rangeOf(t)
		if err != nil {
			return nil, fmt.Errorf("attack: range of %s: %w", t.what, err)
		}
		l, h := math.Ceil(lo-tolRound), math.Floor(hi+tolRound)
		if l != h || math.IsInf(l, 0) {
			continue
		}
		if t.kind == KindChange && l == 0 {
			continue // a net change of nothing reveals no count
		}
		// A finding must survive a second solver: lp.Simplex and the
		// tableau agreeing on one value is a finding, disagreeing a bug
		// of the attacker, reported as an error.
		clo, chi, err := s.confirm(t)
		if err != nil {
			return nil, fmt.Errorf("attack: confirming %s pinned to %g: %w", t.what, l, err)
		}
		if cl, ch := math.Ceil(clo-tolRound), math.Floor(chi+tolRound); cl != l || ch != h {
			return nil, fmt.Errorf("attack: %s: lp.Simplex pins it to %g, the tableau gives %g..%g", t.what, l, clo, chi)
		}
		out.Pinned = append(out.Pinned, t.finding(int64(l)))
	}
	out.LPs = s.lps
	for _, b := range s.blocks {
		out.Fallbacks += b.fallbacks
	}
	if len(out.Pinned) > 0 && (side.SmallCells || side.Unchanged) {
		if err := out.setForeknown(entries, k, side); err != nil {
			return nil, fmt.Errorf("attack: %w", err)
		}
	}
	return out, nil
}

// setForeknown moves to Foreknown every finding that the side knowledge
// pins to the same value without any disclosed value: the same model, with
// every disclosed bound forgotten.
func (f *Findings) setForeknown(entries []*fedreportv1.DisclosureEntry, k uint32, side SideKnowledge) error {
	m, err := buildModel(entries, k, side, true)
	if err != nil {
		return fmt.Errorf("model of the side knowledge alone: %w", err)
	}
	s, err := newSolver(m)
	if err != nil {
		return fmt.Errorf("model of the side knowledge alone: %w", err)
	}
	byWhat := map[string]*target{}
	for _, t := range s.targets {
		byWhat[t.what] = t
	}
	var kept []Finding
	for _, p := range f.Pinned {
		t := byWhat[p.what]
		if t == nil {
			kept = append(kept, p)
			continue
		}
		lo, hi, err := s.rangeOf(t)
		if err != nil {
			return fmt.Errorf("range of %s from the side knowledge alone: %w", t.what, err)
		}
		if math.Ceil(lo-tolRound) == float64(p.Value) && math.Floor(hi+tolRound) == float64(p.Value) {
			f.Foreknown = append(f.Foreknown, p)
			continue
		}
		kept = append(kept, p)
	}
	f.Pinned = kept
	f.LPs += s.lps
	return nil
}

// tolRound is the slack allowed when rounding an LP optimum to an integer.
const tolRound = 1e-6
