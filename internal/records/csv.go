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

// MaxCSVRecord is the longest CSV row accepted, in bytes, quoted line breaks
// included (the header too); a record is far shorter. It is the JSON Lines
// limit, so that neither format lets one line take the reader's memory.
const MaxCSVRecord = MaxJSONLLine

// CSVReader streams records out of a CSV file whose first row names the
// columns (any order; record_id, metric and date required). It holds one row
// at a time, and a row of at most MaxCSVRecord bytes, so memory stays flat on
// any file size and any line length.
type CSVReader struct {
	r      *csv.Reader
	lim    *rowLimiter
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
	lim := &rowLimiter{r: r, source: source, line: 1, rowLine: 1}
	cr := csv.NewReader(bufio.NewReaderSize(lim, 64<<10))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // set from the header
	return &CSVReader{r: cr, lim: lim, source: source, today: DayOf(Today())}
}

// rowLimiter sits below encoding/csv, which has no limit on a row: it
// follows the quoting of the bytes read through it and fails the read once a
// row passes MaxCSVRecord bytes, so that a line without an end, or a quote
// without a close, costs at most that much memory, and is reported at the
// line where the row or the quoted field starts. With strict quoting (no
// LazyQuotes) a line break ends a row exactly when the quotes before it
// since the row started are balanced; where they are not, encoding/csv
// reports the row as malformed before the limiter's view matters.
type rowLimiter struct {
	r         io.Reader
	source    string
	line      int  // line of the next byte
	rowLine   int  // line the current row starts on
	rowBytes  int  // bytes of the current row so far
	inQuote   bool // inside a quoted field
	quoteLine int  // line the open quoted field starts on
	err       error
}

func (l *rowLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		l.rowBytes++
		if l.rowBytes > MaxCSVRecord {
			if l.inQuote {
				l.err = &LineError{Source: l.source, Line: l.quoteLine, Err: fmt.Errorf(
					"the quoted field that starts on this line is not closed within %d bytes (is a \" never closed? a quote inside a field is written \"\")", MaxCSVRecord)}
			} else {
				l.err = &LineError{Source: l.source, Line: l.rowLine, Err: fmt.Errorf("line is longer than %d bytes", MaxCSVRecord)}
			}
			// The bytes before the limit go on to encoding/csv, which
			// returns the rows they end before it sees the error.
			return i, l.err
		}
		switch b {
		case '"':
			l.inQuote = !l.inQuote
			if l.inQuote {
				l.quoteLine = l.line
			}
		case '\n':
			l.line++
			if !l.inQuote {
				l.rowBytes, l.rowLine = 0, l.line
			}
		}
	}
	return n, err
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
	if c.lim.err != nil {
		// Whatever encoding/csv made of the row cut short, the limit is why.
		return c.lim.err
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrQuote) && c.lim.inQuote {
			// The file ended inside a quoted field: encoding/csv names
			// the last line, the field starts where its quote opened.
			return c.lineErr(c.lim.quoteLine, errors.New(`the quote that opens a field on this line is never closed (a quote inside a field is written "")`))
		}
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
		if c.lim.err == nil && errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
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
