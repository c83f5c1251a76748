package node

import (
	"fmt"
	"slices"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// DefaultMinCellCount is k when the policy does not set it.
const DefaultMinCellCount = 5

// DefaultAllowedDimensions are the dimensions a node answers when its policy
// does not list them: victim_age only when a ministry enables it.
var DefaultAllowedDimensions = []fedreportv1.Dimension{
	fedreportv1.Dimension_DIMENSION_MONTH,
	fedreportv1.Dimension_DIMENSION_OFFENCE,
	fedreportv1.Dimension_DIMENSION_CHANNEL,
}

// Policy is the member ministry's disclosure policy (DESIGN.md "Disclosure
// policy"). It lives in the node's configuration; no request can change it.
// Which identities may query is the access table's (server.go).
type Policy struct {
	// MinCellCount is k: a cell of 1..k-1 is answered as suppressed. 0 means
	// DefaultMinCellCount; 1 disables suppression.
	MinCellCount uint32
	// AllowedDimensions are the dimensions a request may group by. nil means
	// DefaultAllowedDimensions; an empty non-nil list allows none.
	AllowedDimensions []fedreportv1.Dimension
	// EarliestDate is the first day (YYYY-MM-DD) a request may cover; empty
	// means no limit.
	EarliestDate string
}

// DefaultPolicy returns the policy of a node configured with nothing.
func DefaultPolicy() Policy {
	return Policy{MinCellCount: DefaultMinCellCount, AllowedDimensions: slices.Clone(DefaultAllowedDimensions)}
}

// normalize applies the defaults and checks the policy.
func (p Policy) normalize() (Policy, error) {
	if p.MinCellCount == 0 {
		p.MinCellCount = DefaultMinCellCount
	}
	if p.AllowedDimensions == nil {
		p.AllowedDimensions = slices.Clone(DefaultAllowedDimensions)
	}
	seen := map[fedreportv1.Dimension]bool{}
	for _, d := range p.AllowedDimensions {
		switch {
		case !records.ValidDimension(d):
			return p, fmt.Errorf("policy: allowed dimension %d is not a dimension (want month, offence, channel, victim_age)", int32(d))
		case d == fedreportv1.Dimension_DIMENSION_MEMBER:
			return p, fmt.Errorf("policy: a node cannot allow grouping by member (only a coordinator answers it)")
		case seen[d]:
			return p, fmt.Errorf("policy: allowed dimension %s is listed twice", records.DimensionName(d))
		}
		seen[d] = true
	}
	if p.EarliestDate != "" {
		if _, err := records.ParseDate(p.EarliestDate); err != nil {
			return p, fmt.Errorf("policy: earliest date: %w", err)
		}
	}
	return p, nil
}

// allows reports whether the policy lets a request group by d.
func (p Policy) allows(d fedreportv1.Dimension) bool {
	return slices.Contains(p.AllowedDimensions, d)
}

// Proto returns the policy as DescribeNode shows it.
func (p Policy) Proto() *fedreportv1.Policy {
	return &fedreportv1.Policy{
		MinCellCount:      p.MinCellCount,
		AllowedDimensions: slices.Clone(p.AllowedDimensions),
		EarliestDate:      p.EarliestDate,
	}
}

// suppress returns the cell as disclosed under k: a count of 1..k-1 is
// withheld (count 0, one suppressed cell, bounds [1, k-1]); anything else is
// exact.
func suppress(c *fedreportv1.Cell, n uint64, k uint32) {
	c.Count, c.SuppressedCells, c.LowerBound, c.UpperBound = disclosed(n, k)
}

// disclosed is what a cell of raw count n discloses under k: the count and
// its bounds, or for 1..k-1 one suppressed cell with bounds 1..k-1.
func disclosed(n uint64, k uint32) (count uint64, suppressed uint32, lower, upper uint64) {
	if n >= 1 && n < uint64(k) {
		return 0, 1, 1, uint64(k) - 1
	}
	return n, 0, n, n
}
