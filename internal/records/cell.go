package records

import fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"

// CellValue returns the value cell c carries for dimension d, as the API
// writes it ("FR", "2020-03", "grooming", "unknown"), or "" when c is not
// grouped by d.
func CellValue(c *fedreportv1.Cell, d fedreportv1.Dimension) string {
	switch d {
	case fedreportv1.Dimension_DIMENSION_MEMBER:
		return c.GetMember()
	case fedreportv1.Dimension_DIMENSION_MONTH:
		return c.GetMonth()
	case fedreportv1.Dimension_DIMENSION_OFFENCE:
		return c.GetOffence()
	case fedreportv1.Dimension_DIMENSION_CHANNEL:
		return c.GetChannel()
	case fedreportv1.Dimension_DIMENSION_VICTIM_AGE:
		return c.GetVictimAge()
	}
	return ""
}

// ParseMonth parses a YYYY-MM month to its MonthOf number. It accepts the
// months of the dates ParseDate accepts.
func ParseMonth(s string) (uint32, error) {
	if len(s) != len("2006-01") {
		return 0, &FieldError{Field: "month", Value: s, Problem: "is not a month (want YYYY-MM)"}
	}
	day, err := ParseDate(s + "-01")
	if err != nil {
		fe := err.(*FieldError)
		return 0, &FieldError{Field: "month", Value: s, Problem: fe.Problem}
	}
	return MonthOf(day), nil
}
