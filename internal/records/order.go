package records

import (
	"cmp"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// CellOrder returns the order of an answer's cells, the one every answer
// of a node and a coordinator lists them in: by metric, then by each
// grouped dimension in group_by order. key gives a cell's metric (for
// dimension 0) or its place in a dimension: members in registry order,
// months by date, the enumerated dimensions in enum order, unknown first.
func CellOrder[T any](groupBy []fedreportv1.Dimension, key func(c T, d fedreportv1.Dimension) uint32) func(a, b T) int {
	return func(a, b T) int {
		if n := cmp.Compare(key(a, 0), key(b, 0)); n != 0 {
			return n
		}
		for _, d := range groupBy {
			if n := cmp.Compare(key(a, d), key(b, d)); n != 0 {
				return n
			}
		}
		return 0
	}
}
