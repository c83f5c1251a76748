package records

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"

	"github.com/isa-alliance/fedreport/internal/echo"
)

// MaxJSONLLine is the longest JSON Lines line accepted; a record is far shorter.
const MaxJSONLLine = 64 << 10

// jsonRecord is one JSON Lines object; null and a missing key both mean empty.
type jsonRecord struct {
	RecordID  string       `json:"record_id"`
	Metric    string       `json:"metric"`
	Date      string       `json:"date"`
	Offence   string       `json:"offence"`
	Channel   string       `json:"channel"`
	VictimAge string       `json:"victim_age"`
	Quantity  jsonQuantity `json:"quantity"`
}

// jsonQuantity accepts a JSON number (ParseQuantity checks it is a whole
// one in range) or null (= 1). A string is refused: docs/data-formats.md documents
// quantity as a number, and a file that quotes it is likely to quote
// something else wrong too.
type jsonQuantity struct {
	raw string
}

func (q *jsonQuantity) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		q.raw = ""
	case len(b) > 0 && b[0] == '"':
		return errQuantityString
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		q.raw = string(b)
	default:
		return errQuantityType
	}
	return nil
}

var (
	errQuantityType   = errors.New("field quantity: want a whole number from 1 to 1000000")
	errQuantityString = errors.New(`field quantity: want a JSON number from 1 to 1000000, got a string (write "quantity":3, not "quantity":"3")`)
)

// JSONLReader streams records out of a JSON Lines file: one object per line
// with the CSV column names as keys, each at most once, values as strings
// (quantity as a number). Blank lines are skipped; unknown or repeated keys
// are an error.
type JSONLReader struct {
	r      *bufio.Reader
	source string
	today  uint32
	line   int
	err    error // sticky I/O error or io.EOF
	seen   bool  // a line that is not blank was read
	buf    []byte
	br     bytes.Reader
}

// NewJSONLReader returns a reader of the JSON Lines in r; source names it in errors.
func NewJSONLReader(r io.Reader, source string) *JSONLReader {
	return &JSONLReader{r: bufio.NewReaderSize(r, 64<<10), source: source, today: DayOf(Today())}
}

// SetToday changes the day used for the not-in-the-future rule (tests).
func (j *JSONLReader) SetToday(t time.Time) { j.today = DayOf(t) }

func (j *JSONLReader) lineErr(err error) error {
	return &LineError{Source: j.source, Line: j.line, Err: err}
}

// readLine returns the next line without its end, or io.EOF.
func (j *JSONLReader) readLine() ([]byte, error) {
	j.buf = j.buf[:0]
	for {
		chunk, err := j.r.ReadSlice('\n')
		if len(j.buf)+len(chunk) > MaxJSONLLine+2 {
			j.line++
			// Skip the rest of the line so that the next call starts fresh.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = j.r.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			return nil, j.lineErr(fmt.Errorf("line is longer than %d bytes", MaxJSONLLine))
		}
		j.buf = append(j.buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(j.buf) == 0 {
			return nil, io.EOF
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		j.line++
		b := j.buf
		b = bytes.TrimSuffix(b, []byte{'\n'})
		b = bytes.TrimSuffix(b, []byte{'\r'})
		return b, nil
	}
}

// Line returns the line of the last record read, so that a caller can name
// a record's place in the file.
func (j *JSONLReader) Line() int { return j.line }

// Next returns the next record, validated, or io.EOF after the last one.
// Every other error is a *LineError; after a record error the next call moves
// on to the next line.
func (j *JSONLReader) Next() (*fedreportv1.Record, error) {
	rec := new(fedreportv1.Record)
	if err := j.Read(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// Read is Next filling a caller-owned record.
func (j *JSONLReader) Read(rec *fedreportv1.Record) error {
	if j.err != nil {
		return j.err
	}
	var line []byte
	for {
		b, err := j.readLine()
		if err != nil {
			var le *LineError
			if errors.As(err, &le) {
				return err
			}
			if err != io.EOF {
				err = fmt.Errorf("read %s: %w", j.source, err)
			} else if !j.seen {
				// As an empty CSV file is: an export that wrote
				// nothing is more likely a mistake than a day
				// without records.
				j.line = 1
				err = j.lineErr(errors.New("file is empty (want one JSON object per line with the keys " + strings.Join(Columns, ", ") + ")"))
			}
			j.err = err
			return err
		}
		if j.line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff"))
		}
		if len(bytes.TrimSpace(b)) != 0 {
			j.seen = true
			line = b
			break
		}
	}
	var jr jsonRecord
	if !parseFlatObject(line, &jr) {
		// Anything unusual (escapes, unknown keys, odd types, bad syntax)
		// goes through encoding/json, which also words the errors.
		jr = jsonRecord{}
		j.br.Reset(line)
		dec := json.NewDecoder(&j.br)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&jr); err != nil {
			return j.lineErr(jsonProblem(err))
		}
		if _, err := dec.Token(); err != io.EOF {
			return j.lineErr(errors.New("want exactly one JSON object on the line"))
		}
		// encoding/json keeps the last of a repeated key; which one the
		// sender meant is unknown.
		if err := repeatedKey(line); err != nil {
			return j.lineErr(err)
		}
	}
	if err := fillJSON(rec, &jr); err != nil {
		return j.lineErr(err)
	}
	if _, err := ValidateDay(rec, j.today); err != nil {
		return j.lineErr(err)
	}
	return nil
}

// jsonProblem rewords encoding/json errors to say what is wanted.
func jsonProblem(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("want a JSON object with the keys %s, got %s", strings.Join(Columns, ", "), withArticle(te.Value))
		}
		return fmt.Errorf("field %s: want a string, got %s", te.Field, withArticle(te.Value))
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s (want %s)", rest, strings.Join(Columns, ", "))
	}
	if errors.Is(err, errQuantityType) || errors.Is(err, errQuantityString) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("incomplete JSON object (want one object per line)")
	}
	return fmt.Errorf("not a JSON object: %s", strings.TrimPrefix(msg, "json: "))
}

// repeatedKey returns an error naming a key that appears twice in line, a
// flat object that encoding/json has decoded into a jsonRecord. Keys are
// compared as encoding/json matches them to fields: without case.
func repeatedKey(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return nil
	}
	var seen []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		key, ok := t.(string)
		if !ok {
			return nil
		}
		for _, k := range seen {
			if strings.EqualFold(k, key) {
				return fmt.Errorf("key %s appears twice in the object (give each key once)", echo.Quote(key))
			}
		}
		seen = append(seen, key)
		if _, err := dec.Token(); err != nil { // the value: a string, a number or null
			return nil
		}
	}
	return nil
}

func fillJSON(rec *fedreportv1.Record, jr *jsonRecord) error {
	var err error
	rec.RecordId = jr.RecordID
	if rec.Metric, err = ParseMetric(jr.Metric); err != nil {
		return err
	}
	rec.Date = jr.Date
	if rec.Offence, err = ParseOffence(jr.Offence); err != nil {
		return err
	}
	if rec.Channel, err = ParseChannel(jr.Channel); err != nil {
		return err
	}
	if rec.VictimAge, err = ParseVictimAge(jr.VictimAge); err != nil {
		return err
	}
	if rec.Quantity, err = ParseQuantity(jr.Quantity.raw); err != nil {
		return err
	}
	return nil
}

// AppendJSONL appends r as one JSON Lines line (with its newline) to b.
func AppendJSONL(b []byte, r *fedreportv1.Record) []byte {
	b = append(b, `{"record_id":`...)
	b = appendJSONString(b, r.GetRecordId())
	b = append(b, `,"metric":"`...)
	b = append(b, MetricName(r.GetMetric())...)
	b = append(b, `","date":`...)
	b = appendJSONString(b, r.GetDate())
	if o := r.GetOffence(); o != 0 {
		b = append(b, `,"offence":"`...)
		b = append(b, OffenceName(o)...)
		b = append(b, '"')
	}
	if c := r.GetChannel(); c != 0 {
		b = append(b, `,"channel":"`...)
		b = append(b, ChannelName(c)...)
		b = append(b, '"')
	}
	if a := r.GetVictimAge(); a != 0 {
		b = append(b, `,"victim_age":"`...)
		b = append(b, VictimAgeName(a)...)
		b = append(b, '"')
	}
	b = append(b, `,"quantity":`...)
	b = strconv.AppendUint(b, uint64(Quantity(r)), 10)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string; valid record fields need no
// escaping, anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// parseFlatObject is the fast path for the common line: one flat object whose
// keys are exactly the column names, each at most once, with plain ASCII
// string values (no escapes) or null, and a plain whole number or null for
// quantity. It
// returns false for anything else, leaving the line to encoding/json; it
// never accepts a line encoding/json would read differently (FuzzJSONLFastPath).
func parseFlatObject(b []byte, jr *jsonRecord) bool {
	var seen [numColumns]bool
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, n, ok := plainString(b, i)
		if !ok {
			return false
		}
		col := -1
		for c, name := range Columns {
			if string(key) == name {
				col = c
				break
			}
		}
		if col < 0 || seen[col] {
			return false
		}
		seen[col] = true
		i = skipSpace(b, n)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		var val string
		switch c := b[i]; {
		case c == '"' && col != colQuantity:
			v, n, ok := plainString(b, i)
			if !ok {
				return false
			}
			val, i = string(v), n
		case c == 'n':
			if len(b)-i < 4 || string(b[i:i+4]) != "null" {
				return false
			}
			i += 4
		case col == colQuantity && c >= '1' && c <= '9':
			n := i
			for n < len(b) && b[n] >= '0' && b[n] <= '9' {
				n++
			}
			if n < len(b) && (b[n] == '.' || b[n] == 'e' || b[n] == 'E') {
				return false
			}
			val, i = string(b[i:n]), n
		default:
			return false
		}
		switch col {
		case colRecordID:
			jr.RecordID = val
		case colMetric:
			jr.Metric = val
		case colDate:
			jr.Date = val
		case colOffence:
			jr.Offence = val
		case colChannel:
			jr.Channel = val
		case colVictimAge:
			jr.VictimAge = val
		case colQuantity:
			jr.Quantity.raw = val
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] made only of printable ASCII with
// no escapes; it returns the contents and the index after the closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// withArticle puts "a" or "an" before the name of a JSON value's kind, as
// encoding/json gives it ("array", "object", "number", "bool", "string").
func withArticle(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}
