package node

import (
	"fmt"
	"slices"

	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// DefaultMinCellCount is k when the policy does not set it.
const DefaultMinCellCount = 5

// MinMinCellCount is the smallest k a policy may set: with k = 2 a withheld
// cell could only be 1, and bounds would say so.
const MinMinCellCount = 3

// DefaultTables are the tables a node publishes when its policy does not
// list them: each dimension alone, no crosses (and always the total).
func DefaultTables() [][]fedreportv1.Dimension {
	return [][]fedreportv1.Dimension{
		{fedreportv1.Dimension_DIMENSION_OFFENCE},
		{fedreportv1.Dimension_DIMENSION_CHANNEL},
		{fedreportv1.Dimension_DIMENSION_VICTIM_AGE},
	}
}

// Policy is the member ministry's disclosure policy (DESIGN.md "Disclosure
// policy and the protected release"). It lives in the node's configuration;
// no request can change it. Which identities may query is the access
// table's (server.go).
type Policy struct {
	// MinCellCount is k: a cell of 1..k-1 contributing records is
	// suppressed. 0 means DefaultMinCellCount; below MinMinCellCount is
	// refused.
	MinCellCount uint32
	// Tables are the dimension combinations published besides the total.
	// nil means DefaultTables; an empty non-nil list publishes totals only.
	Tables [][]fedreportv1.Dimension
	// Periods are the named release periods (an operation and its phases);
	// calendar months are always release periods.
	Periods []periods.Period
	// DominancePercent, when not 0, also suppresses a cell in which one
	// record holds more than this share of the quantity.
	DominancePercent uint32
	// EarliestDate is the first day (YYYY-MM-DD) a request may cover; empty
	// means no limit.
	EarliestDate string
}

// DefaultPolicy returns the policy of a node configured with nothing.
func DefaultPolicy() Policy {
	return Policy{MinCellCount: DefaultMinCellCount, Tables: DefaultTables()}
}

// PolicyConfigError is a policy that cannot be used: Field names the
// setting (as the configuration file spells it) and Problem says what to fix.
type PolicyConfigError struct {
	Field   string
	Problem string
}

func (e *PolicyConfigError) Error() string { return "policy: " + e.Field + ": " + e.Problem }

// Validate checks the policy as OpenStore does: the errors are
// *PolicyConfigError, naming the setting to fix.
func (p Policy) Validate() error {
	_, _, err := p.normalize()
	return err
}

// normalize applies the defaults and checks the policy.
func (p Policy) normalize() (Policy, *periods.Calendar, error) {
	if p.MinCellCount == 0 {
		p.MinCellCount = DefaultMinCellCount
	}
	if p.MinCellCount < MinMinCellCount {
		return p, nil, &PolicyConfigError{"min_cell_count", fmt.Sprintf("is %d; give %d or more (with k = %d a suppressed cell's bounds would pin it)", p.MinCellCount, MinMinCellCount, p.MinCellCount)}
	}
	if p.DominancePercent > 100 {
		return p, nil, &PolicyConfigError{"dominance_percent", fmt.Sprintf("is %d; give a share of 1..100 percent, or 0 for none", p.DominancePercent)}
	}
	if p.Tables == nil {
		p.Tables = DefaultTables()
	}
	var seen []uint8
	for i, t := range p.Tables {
		if len(t) == 0 {
			return p, nil, &PolicyConfigError{fmt.Sprintf("tables[%d]", i), "is empty; the total is always published, list only tables with dimensions"}
		}
		for j, d := range t {
			switch {
			case d == fedreportv1.Dimension_DIMENSION_MONTH || d == fedreportv1.Dimension_DIMENSION_MEMBER:
				return p, nil, &PolicyConfigError{fmt.Sprintf("tables[%d]", i), fmt.Sprintf("%s is not a table dimension (want offence, channel, victim_age; months are release periods, members a coordinator's)", records.DimensionName(d))}
			case !records.ValidDimension(d):
				return p, nil, &PolicyConfigError{fmt.Sprintf("tables[%d]", i), fmt.Sprintf("dimension %d is not a dimension (want offence, channel, victim_age)", int32(d))}
			case slices.Contains(t[:j], d):
				return p, nil, &PolicyConfigError{fmt.Sprintf("tables[%d]", i), fmt.Sprintf("lists %s twice", records.DimensionName(d))}
			}
		}
		m := tableMask(t)
		if slices.Contains(seen, m) {
			return p, nil, &PolicyConfigError{fmt.Sprintf("tables[%d]", i), fmt.Sprintf("%s is listed twice", records.DimensionNames(t))}
		}
		seen = append(seen, m)
	}
	cal, err := periods.New(p.Periods)
	if err != nil {
		return p, nil, &PolicyConfigError{"periods", err.Error()}
	}
	p.Periods = cal.Named()
	if p.EarliestDate != "" {
		if _, err := records.ParseDate(p.EarliestDate); err != nil {
			return p, nil, &PolicyConfigError{"earliest_date", err.Error()}
		}
	}
	return p, cal, nil
}

// masks returns the published tables as masks, the total first.
func (p Policy) masks() []uint8 {
	out := []uint8{0}
	for _, t := range p.Tables {
		out = append(out, tableMask(t))
	}
	return out
}

// publishes reports whether the policy publishes the table of group_by's
// dimensions (month aside): the total, or one of its tables.
func (p Policy) publishes(mask uint8) bool {
	return slices.Contains(p.masks(), mask)
}

// tableNames lists the published tables as a user writes them.
func (p Policy) tableNames() string {
	s := "the total (no group_by)"
	for _, t := range p.Tables {
		s += ", " + records.DimensionNames(t)
	}
	return s
}

// Proto returns the policy as DescribeNode shows it.
func (p Policy) Proto() *fedreportv1.Policy {
	out := &fedreportv1.Policy{
		MinCellCount:     p.MinCellCount,
		EarliestDate:     p.EarliestDate,
		DominancePercent: p.DominancePercent,
	}
	// allowed_dimensions, for clients that predate tables: month and every
	// dimension some table has.
	dims := []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}
	for _, t := range p.Tables {
		out.Tables = append(out.Tables, &fedreportv1.Table{Dimensions: slices.Clone(t)})
		for _, d := range t {
			if !slices.Contains(dims, d) {
				dims = append(dims, d)
			}
		}
	}
	slices.Sort(dims)
	out.AllowedDimensions = dims
	for _, per := range p.Periods {
		out.Periods = append(out.Periods, &fedreportv1.Period{Name: per.Name, From: records.DateString(per.From), To: records.DateString(per.To)})
	}
	return out
}
