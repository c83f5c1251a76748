package records

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"

	"github.com/isa-alliance/fedreport/internal/echo"
)

// Columns are the record fields in file order (CSV header, JSON Lines keys).
var Columns = []string{"record_id", "metric", "date", "offence", "channel", "victim_age", "quantity"}

const (
	colRecordID = iota
	colMetric
	colDate
	colOffence
	colChannel
	colVictimAge
	colQuantity
	numColumns
)

// LineError is a problem with one line of an input file. It prints as
// "fr.csv:17: metric "arrest" is not a metric (want ...)".
type LineError struct {
	// Source names the input (a file name; "-" or empty for standard input).
	Source string
	// Line is the 1-based line number the problem is on.
	Line int
	// Err is the problem; often a *FieldError.
	Err error
}

func (e *LineError) Error() string {
	src := e.Source
	if src == "" {
		src = "-"
	}
	return src + ":" + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}

func (e *LineError) Unwrap() error { return e.Err }

// CSVReader streams records out of a CSV file whose first row names the
// columns (any order; record_id, metric and date required). It holds one row
// at a time, so memory stays flat on any file size.
type CSVReader struct {
	r      *csv.Reader
	source string
	today  uint32
	cols   [numColumns]int // column index of each field, -1 when absent
	ncols  int
	err    error // sticky: header or I/O error
	header bool
	line   int // line of the last row read
}

// NewCSVReader returns a reader of the CSV in r; source names it in errors.
func NewCSVReader(r io.Reader, source string) *CSVReader {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // set from the header
	return &CSVReader{r: cr, source: source, today: DayOf(Today())}
}

// SetToday changes the day used for the not-in-the-future rule (tests).
func (c *CSVReader) SetToday(t time.Time) { c.today = DayOf(t) }

func (c *CSVReader) lineErr(line int, err error) error {
	return &LineError{Source: c.source, Line: line, Err: err}
}

func (c *CSVReader) readHeader() error {
	row, err := c.r.Read()
	if err == io.EOF {
		return c.lineErr(1, errors.New("file is empty (want a header row naming the columns "+strings.Join(Columns, ",")+")"))
	}
	if err != nil {
		return c.csvErr(err)
	}
	for i := range c.cols {
		c.cols[i] = -1
	}
	line, _ := c.r.FieldPos(0)
	for i, name := range row {
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff") // spreadsheet exports start with a BOM
		}
		key := strings.ToLower(strings.TrimSpace(name))
		idx := -1
		for j, col := range Columns {
			if col == key {
				idx = j
				break
			}
		}
		if idx < 0 {
			return c.lineErr(line, fmt.Errorf("unknown column %s (want %s)", echo.Quote(name), strings.Join(Columns, ", ")))
		}
		if c.cols[idx] >= 0 {
			return c.lineErr(line, fmt.Errorf("column %s appears twice", echo.Quote(key)))
		}
		c.cols[idx] = i
	}
	for _, req := range []int{colRecordID, colMetric, colDate} {
		if c.cols[req] < 0 {
			return c.lineErr(line, fmt.Errorf("header has no %s column (want %s; offence, channel, victim_age and quantity are optional)", Columns[req], strings.Join(Columns[:3], ", ")))
		}
	}
	c.ncols = len(row)
	c.r.FieldsPerRecord = len(row)
	return nil
}

func (c *CSVReader) csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		inner := pe.Err
		if errors.Is(inner, csv.ErrFieldCount) {
			inner = fmt.Errorf("row has a different number of fields than the header's %d", c.ncols)
		}
		return c.lineErr(pe.Line, inner)
	}
	return fmt.Errorf("read %s: %w", c.source, err)
}

// Next returns the next record, validated, or io.EOF after the last one.
// Every other error is a *LineError; after a header or read error Next keeps
// returning it, after a record error the next call moves on to the next row.
func (c *CSVReader) Next() (*fedreportv1.Record, error) {
	rec := new(fedreportv1.Record)
	if err := c.Read(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// Read is Next filling a caller-owned record, so that a caller which sends
// records on immediately can reuse one.
func (c *CSVReader) Read(rec *fedreportv1.Record) error {
	if c.err != nil {
		return c.err
	}
	if !c.header {
		c.header = true
		if err := c.readHeader(); err != nil {
			c.err = err
			return err
		}
	}
	row, err := c.r.Read()
	if err == io.EOF {
		c.err = io.EOF
		return io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			return c.csvErr(err) // the row is skipped; the file can go on
		}
		c.err = c.csvErr(err)
		return c.err
	}
	line, _ := c.r.FieldPos(0)
	c.line = line
	if err := c.fill(rec, row); err != nil {
		return c.lineErr(line, err)
	}
	if _, err := ValidateDay(rec, c.today); err != nil {
		return c.lineErr(line, err)
	}
	return nil
}

// Line returns the line the last record read starts on (a quoted field may
// span lines), so that a caller can name a record's place in the file.
func (c *CSVReader) Line() int { return c.line }

func (c *CSVReader) field(row []string, col int) string {
	if i := c.cols[col]; i >= 0 {
		return row[i]
	}
	return ""
}

func (c *CSVReader) fill(rec *fedreportv1.Record, row []string) error {
	var err error
	rec.RecordId = row[c.cols[colRecordID]]
	if rec.Metric, err = ParseMetric(row[c.cols[colMetric]]); err != nil {
		return err
	}
	rec.Date = row[c.cols[colDate]]
	if rec.Offence, err = ParseOffence(c.field(row, colOffence)); err != nil {
		return err
	}
	if rec.Channel, err = ParseChannel(c.field(row, colChannel)); err != nil {
		return err
	}
	if rec.VictimAge, err = ParseVictimAge(c.field(row, colVictimAge)); err != nil {
		return err
	}
	if rec.Quantity, err = ParseQuantity(c.field(row, colQuantity)); err != nil {
		return err
	}
	return nil
}

// CSVWriter writes records as CSV with the canonical header. Unspecified
// dimensions are written as empty fields.
type CSVWriter struct {
	w      *csv.Writer
	row    [numColumns]string
	header bool
}

// NewCSVWriter returns a writer to w; call Flush when done.
func NewCSVWriter(w io.Writer) *CSVWriter {
	return &CSVWriter{w: csv.NewWriter(w)}
}

// Write writes one record (and the header before the first).
func (c *CSVWriter) Write(r *fedreportv1.Record) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(Columns); err != nil {
			return err
		}
	}
	c.row[colRecordID] = r.GetRecordId()
	c.row[colMetric] = MetricName(r.GetMetric())
	c.row[colDate] = r.GetDate()
	c.row[colOffence] = emptyIfUnknown(OffenceName(r.GetOffence()))
	c.row[colChannel] = emptyIfUnknown(ChannelName(r.GetChannel()))
	c.row[colVictimAge] = emptyIfUnknown(VictimAgeName(r.GetVictimAge()))
	c.row[colQuantity] = strconv.FormatUint(uint64(Quantity(r)), 10)
	return c.w.Write(c.row[:])
}

// Flush writes the header if nothing was written yet, flushes, and returns
// any write error.
func (c *CSVWriter) Flush() error {
	if !c.header {
		c.header = true
		if err := c.w.Write(Columns); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func emptyIfUnknown(s string) string {
	if s == Unknown {
		return ""
	}
	return s
}

// WriteCSV writes the header and records to w.
func WriteCSV(w io.Writer, recs ...*fedreportv1.Record) error {
	cw := NewCSVWriter(w)
	for _, r := range recs {
		if err := cw.Write(r); err != nil {
			return err
		}
	}
	return cw.Flush()
}
