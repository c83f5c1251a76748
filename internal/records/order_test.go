package records

import (
	"slices"
	"testing"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestCellOrderSortsByMetricThenGroupByOrder(t *testing.T) {
	t.Parallel()
	type cell struct{ metric, month, offence uint32 }
	key := func(c cell, d fedreportv1.Dimension) uint32 {
		switch d {
		case fedreportv1.Dimension_DIMENSION_MONTH:
			return c.month
		case fedreportv1.Dimension_DIMENSION_OFFENCE:
			return c.offence
		}
		return c.metric
	}
	cells := []cell{{2, 1, 1}, {1, 2, 1}, {1, 1, 2}, {1, 1, 1}}
	byOffenceThenMonth := slices.Clone(cells)
	slices.SortFunc(byOffenceThenMonth, CellOrder([]fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_MONTH}, key))
	if want := []cell{{1, 1, 1}, {1, 2, 1}, {1, 1, 2}, {2, 1, 1}}; !slices.Equal(byOffenceThenMonth, want) {
		t.Errorf("by offence, month: got %v, want %v", byOffenceThenMonth, want)
	}
	slices.SortFunc(cells, CellOrder([]fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH, fedreportv1.Dimension_DIMENSION_OFFENCE}, key))
	if want := []cell{{1, 1, 1}, {1, 1, 2}, {1, 2, 1}, {2, 1, 1}}; !slices.Equal(cells, want) {
		t.Errorf("by month, offence: got %v, want %v", cells, want)
	}
}
