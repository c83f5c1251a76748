package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// ingestBatch is how many records travel in one stream message.
const ingestBatch = 2000

// maxListedErrors is how many validation errors ingest prints before it only counts.
const maxListedErrors = 20

// nodeClientOptions are the flags of every verb that talks to a node's admin API.
type nodeClientOptions struct {
	node string
	tls  tlsOptions
}

func (o *nodeClientOptions) AddFlags(fs *pflag.FlagSet) { addNodeFlags(fs, &o.node, &o.tls) }

func addNodeFlags(fs *pflag.FlagSet, node *string, tls *tlsOptions) {
	fs.StringVar(node, "node", os.Getenv("FEDREPORT_NODE"), "node admin address: unix:///path/to/node.sock or host:port (env FEDREPORT_NODE)")
	tls.AddFlags(fs)
}

type ingestOptions struct {
	node   string
	tls    tlsOptions
	format string
	// check validates the files without a node (--check); errorsFile
	// receives every problem it finds.
	check      bool
	errorsFile string
	// progress draws a progress line on stderr (set when it is a terminal).
	progress bool
}

func (o *ingestOptions) AddFlags(fs *pflag.FlagSet) {
	addNodeFlags(fs, &o.node, &o.tls)
	fs.StringVar(&o.format, "format", "", "csv or jsonl; required for - (stdin), otherwise taken from the file extension")
	fs.BoolVar(&o.check, "check", false, "only check the files, here, as the node would (every record, and each record_id once); send nothing, need no node; exit 1 on any problem")
	fs.StringVar(&o.errorsFile, "errors-file", "", "with --check: write every problem, one a line, to this file (the output lists the first 20)")
}

func newIngestCommand() *cobra.Command {
	var o ingestOptions
	cmd := &cobra.Command{
		Use:   "ingest --node ADDR FILE... | ingest --check [--errors-file FILE] FILE...",
		Short: "Load records from CSV or JSON Lines files into a node, all or nothing",
		Long: `Load records into a node (member admin). Every file of one command travels in
one stream that the node applies atomically: if any line is invalid, nothing is
stored. Re-sending a record_id replaces that record; ingesting the same file twice
changes nothing. FILE may be - for stdin, with --format.

Errors name FILE:LINE, the field, what is wrong and what is allowed; up to 20
are listed, then a count. When stderr is a terminal, a progress line shows the
records sent, records/s and, for files, the percentage read. The summary (new,
changed and unchanged records, the node's new data version) goes to stdout.

With --check the files are only checked, here, by the same rules (every
record, and each record_id once across the files), with no node and nothing
sent; --errors-file FILE receives every problem, one a line. It exits 1 when
there is any.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.check {
				return runCheck(o, args, cmd.InOrStdin(), cmd.OutOrStdout())
			}
			if o.errorsFile != "" {
				return fmt.Errorf("--errors-file goes with --check (an ingest lists the first 20 problems and stores nothing)")
			}
			o.progress = isTerminal(cmd.ErrOrStderr())
			return runIngest(cmd.Context(), o, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// recordReader is what both file parsers provide.
type recordReader interface {
	Next() (*fedreportv1.Record, error)
	Line() int
}

// readRecords reads rr to its end: each record to rec, each bad line to
// bad. A header or read error that repeats ends it, as the rest of the file
// cannot be read; any other error, or one rec returns, is returned.
func readRecords(rr recordReader, rec func(*fedreportv1.Record) error, bad func(*records.LineError)) error {
	lastBad := 0
	for {
		r, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var lineErr *records.LineError
		if errors.As(err, &lineErr) {
			if lineErr.Line <= lastBad {
				return nil
			}
			lastBad = lineErr.Line
			bad(lineErr)
			continue
		}
		if err != nil {
			return err
		}
		if err := rec(r); err != nil {
			return err
		}
	}
}

// input is one FILE argument of ingest.
type input struct {
	name    string // as given; "-" is stdin
	source  string // as errors and the node name it: the name, or "stdin"
	regular bool   // a regular file, which can be read again to place a record
	size    int64  // bytes, when known
}

// inspectInput returns what is known of name before reading it.
func inspectInput(name string, stdin io.Reader) input {
	in := input{name: name, source: name, size: -1}
	var fi os.FileInfo
	var err error
	if name == "-" {
		in.source = "stdin"
		f, ok := stdin.(*os.File)
		if !ok {
			return in
		}
		fi, err = f.Stat()
	} else {
		fi, err = os.Stat(name)
	}
	if err == nil && fi.Mode().IsRegular() {
		in.regular, in.size = name != "-", fi.Size()
	}
	return in
}

// openRecords opens name (or stdin for "-") with the parser its format asks
// for; read, when not nil, is added the bytes read.
func openRecords(name, format string, stdin io.Reader, read *int64) (recordReader, io.Closer, error) {
	var r io.Reader
	var c io.Closer = io.NopCloser(nil)
	source := name
	if name == "-" {
		if format == "" {
			return nil, nil, fmt.Errorf("reading stdin needs --format csv or --format jsonl")
		}
		r, source = stdin, "stdin"
	} else {
		if format == "" {
			switch strings.ToLower(filepath.Ext(name)) {
			case ".csv":
				format = "csv"
			case ".jsonl", ".ndjson":
				format = "jsonl"
			default:
				return nil, nil, fmt.Errorf("%s: cannot tell the format from the extension (want .csv or .jsonl, or pass --format)", name)
			}
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		r, c = f, f
	}
	if read != nil {
		r = &countingReader{r: r, n: read}
	}
	switch format {
	case "csv":
		return records.NewCSVReader(r, source), c, nil
	case "jsonl":
		return records.NewJSONLReader(r, source), c, nil
	}
	c.Close()
	return nil, nil, fmt.Errorf("--format %s: want csv or jsonl", echo.Quote(format))
}

// countingReader adds the bytes read through it to *n.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// sentFile is where one input's records sit in the stream: the node numbers
// the records of a stream from 0 in the order they arrive.
type sentFile struct {
	input
	first, count uint64
}

func runIngest(ctx context.Context, o ingestOptions, files []string, stdin io.Reader, stdout, stderr io.Writer) error {
	inputs := make([]input, len(files))
	var total int64
	for i, name := range files {
		inputs[i] = inspectInput(name, stdin)
		if total >= 0 && inputs[i].size >= 0 {
			total += inputs[i].size
		} else {
			total = -1
		}
	}
	conn, err := dialNode(o.node, o.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The stream is cancelled on any local error, which makes the node roll it back.
	ctx, cancel := context.WithCancel(ctx)
	var notices sync.WaitGroup
	defer func() {
		cancel()
		notices.Wait()
	}()
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(ctx)
	if err != nil {
		return describeNodeRPCError("ingest", o.node, err)
	}
	// The progress line and the write lock notice share stderr.
	stderr = &lockedWriter{w: stderr}
	notices.Go(func() { noteWriteLock(stream, stderr, time.Now) })
	var (
		sent     uint64
		read     int64
		badLines int
		listed   []string
		placed   []sentFile
		start    = time.Now()
		batch    = make([]*fedreportv1.Record, 0, ingestBatch)
		prog     *progress
	)
	if o.progress {
		prog = newProgress(stderr, total, time.Now)
	}
	defer prog.clear()
	flush := func(source string) error {
		if len(batch) == 0 || badLines > 0 {
			batch = batch[:0]
			return nil
		}
		if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: batch, Source: source}); err != nil {
			return err
		}
		sent += uint64(len(batch))
		batch = make([]*fedreportv1.Record, 0, ingestBatch)
		return nil
	}
	// nodeErr explains a refusal of the node, at the refused record's line.
	nodeErr := func(err error) error {
		prog.clear()
		if last := len(placed) - 1; last >= 0 {
			// The refusal may come while the file is still being sent.
			placed[last].count = sent + uint64(len(batch)) - placed[last].first
		}
		if errors.Is(err, io.EOF) {
			// A failed Send reports only io.EOF; the status comes from CloseAndRecv.
			_, err = stream.CloseAndRecv()
		}
		if d := stream.Trailer().Get(grpcsrv.IdleTrailer); len(d) > 0 {
			return fmt.Errorf("ingest: the node ended the stream after receiving nothing for %s (its --ingest-idle-timeout) and stored nothing of it; "+
				"send the input without pauses that long, or ask the node's operator for a longer timeout. It is safe to run the same command again", echo.Name(d[0]))
		}
		// A Send failed, so the stream ended before the CLI closed it: the
		// node cannot have committed it.
		if e := interruptedIngest(ctx, err, false); e != nil {
			return e
		}
		return placeNodeError(err, inputs, placed, o.format, o.node)
	}
	for _, in := range inputs {
		rr, closer, err := openRecords(in.name, o.format, stdin, &read)
		if err != nil {
			return err
		}
		placed = append(placed, sentFile{input: in, first: sent})
		err = readRecords(rr, func(rec *fedreportv1.Record) error {
			batch = append(batch, rec)
			if len(batch) == ingestBatch {
				if err := flush(in.source); err != nil {
					return nodeErr(err)
				}
			}
			prog.update(sent+uint64(len(batch)), read)
			return nil
		}, func(e *records.LineError) {
			badLines++
			if len(listed) < maxListedErrors {
				listed = append(listed, e.Error())
			}
		})
		if err != nil {
			closer.Close()
			return err
		}
		if err := flush(in.source); err != nil {
			closer.Close()
			return nodeErr(err)
		}
		placed[len(placed)-1].count = sent - placed[len(placed)-1].first
		closer.Close()
	}
	if badLines > 0 {
		cancel()
		prog.clear()
		msg := strings.Join(listed, "\n")
		if badLines > len(listed) {
			msg += fmt.Sprintf("\n... and %d more", badLines-len(listed))
		}
		return fmt.Errorf("%s\n%d invalid line(s); nothing was stored. Fix them and ingest again", msg, badLines)
	}
	if ctx.Err() != nil {
		// Interrupted before the stream was closed: closing it now would
		// not commit it, and its error would not say so.
		prog.clear()
		return interruptedIngest(ctx, ctx.Err(), false)
	}
	prog.status(fmt.Sprintf("%s sent; the node is committing them", plural(sent, "record")))
	resp, err := stream.CloseAndRecv()
	if err != nil {
		if e := interruptedIngest(ctx, err, true); e != nil {
			prog.clear()
			return e
		}
		return nodeErr(err)
	}
	prog.clear()
	fmt.Fprintln(stdout, ingestSummary(resp, time.Since(start)))
	return nil
}

// interruptedIngest explains an ingest stream that ended without the node's
// answer, cancelled or cut off, or returns nil when err is the node's own
// refusal. Until the CLI has closed the stream (closed false) the node
// cannot have committed it; after, the answer to a commit may be what was
// lost. Either way the same command can run again: records the node
// already holds come back unchanged. No certificate hint: the connection was
// made, so the certificates were accepted.
func interruptedIngest(ctx context.Context, err error, closed bool) error {
	cause := "cancelled"
	if ctx.Err() == nil {
		st, _ := status.FromError(err)
		switch st.Code() {
		case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
			cause = "connection to the node lost: " + st.Message()
		default:
			return nil
		}
	}
	if closed {
		return fmt.Errorf("ingest: stream interrupted while the node was committing it (%s); it may or may not be stored. "+
			"It is safe to run the same command again: records the node already holds come back unchanged", cause)
	}
	return fmt.Errorf("ingest: stream interrupted before it was complete (%s); the node did not commit it and nothing of it was stored. "+
		"It is safe to run the same command again", cause)
}

// ingestSummary is the line an ingest ends with: what the node did with the
// records and how long it took.
func ingestSummary(resp *fedreportv1.IngestRecordsResponse, elapsed time.Duration) string {
	took := elapsed.Round(time.Millisecond).String()
	// A few records that waited behind another ingest would show a rate of
	// 0 records/s, which says nothing about the node: then only the time.
	if rate := float64(resp.GetReceived()) / max(elapsed.Seconds(), 1e-9); rate >= 0.5 {
		took += fmt.Sprintf(", %.0f records/s", rate)
	}
	return fmt.Sprintf("ingested %s: %d new, %d changed, %d unchanged; data version %d (%s)",
		plural(resp.GetReceived(), "record"), resp.GetAdded(), resp.GetChanged(), resp.GetUnchanged(), resp.GetDataVersion(), took)
}

// recordIndexRE reads the stream index of a refused record from a field
// violation ("records[41].record_id").
var recordIndexRE = regexp.MustCompile(`^records\[(\d+)\]`)

// placeNodeError turns the node's refusal of one record of the stream into
// an error that names FILE:LINE, as the CLI's own validation does: the node
// knows the record's place in the stream, the CLI knows which file and line
// that was (it reads the file again to find it). A duplicate record_id also
// names the line of its first occurrence, and every other duplicate of the
// inputs is listed with it (listDuplicates). Anything else, or a record of
// stdin, which cannot be read again, is reported as the node worded it.
func placeNodeError(err error, inputs []input, placed []sentFile, format, addr string) error {
	st, ok := status.FromError(err)
	if !ok {
		return describeNodeRPCError("ingest", addr, err)
	}
	var reason string
	index := int64(-1)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				if m := recordIndexRE.FindStringSubmatch(v.GetField()); m != nil {
					index, _ = strconv.ParseInt(m[1], 10, 64)
				}
			}
		}
	}
	if index < 0 || (reason != node.ReasonDuplicateRecord && reason != node.ReasonInvalidRecord) {
		return describeNodeRPCError("ingest", addr, err)
	}
	if reason == node.ReasonDuplicateRecord {
		// The node stops at the first duplicate; list them all, as
		// invalid lines are listed.
		if dups, total, ok := listDuplicates(inputs, format, maxListedErrors); ok && total > 0 {
			return describeDuplicates(inputs, dups, total)
		}
	}
	file, line, id, ok := locateRecord(placed, format, uint64(index))
	if !ok {
		return describeNodeRPCError("ingest", addr, err)
	}
	var msg string
	if reason == node.ReasonDuplicateRecord {
		msg = fmt.Sprintf("%s:%d: record_id %s was already sent in this stream", file.source, line, echo.Quote(id))
		if first, firstLine, ok := firstOccurrence(placed, format, id, uint64(index)); ok {
			msg += fmt.Sprintf(", at %s:%d", first.source, firstLine)
		}
		msg += " (send each record once; a later ingest may correct it)"
	} else {
		// The node's message is "record N of SOURCE: <problem>".
		problem := st.Message()
		problem, _ = strings.CutPrefix(problem, fmt.Sprintf("record %d of %s: ", uint64(index)-file.first+1, echo.Name(file.source)))
		msg = fmt.Sprintf("%s:%d: %s", file.source, line, problem)
	}
	return fmt.Errorf("%s\nthe node refused the stream; nothing was stored. Fix it and ingest again", msg)
}

// locateRecord reads the inputs again up to the index-th record sent and
// returns its file, line and record_id.
func locateRecord(placed []sentFile, format string, index uint64) (sentFile, int, string, bool) {
	for _, f := range placed {
		if index < f.first || index >= f.first+f.count {
			continue
		}
		var found sentFile
		var line int
		var id string
		ok := scanSent(f, format, func(i uint64, rec *fedreportv1.Record, l int) bool {
			if f.first+i != index {
				return true
			}
			found, line, id = f, l, rec.GetRecordId()
			return false
		})
		return found, line, id, ok && line > 0
	}
	return sentFile{}, 0, "", false
}

// firstOccurrence returns the file and line of the first record sent before
// index with record_id id.
func firstOccurrence(placed []sentFile, format, id string, index uint64) (sentFile, int, bool) {
	for _, f := range placed {
		if f.first >= index {
			break
		}
		var line int
		scanSent(f, format, func(i uint64, rec *fedreportv1.Record, l int) bool {
			if f.first+i >= index {
				return false
			}
			if rec.GetRecordId() == id {
				line = l
				return false
			}
			return true
		})
		if line > 0 {
			return f, line, true
		}
	}
	return sentFile{}, 0, false
}

// scanSent reads the records of a regular file that were sent, calling fn
// with each one's index in the file (from 0) and line until fn returns
// false. Only valid records are counted: a stream is sent only when every
// line is valid.
func scanSent(f sentFile, format string, fn func(i uint64, rec *fedreportv1.Record, line int) bool) bool {
	if !f.regular {
		return false
	}
	rr, closer, err := openRecords(f.name, format, nil, nil)
	if err != nil {
		return false
	}
	defer closer.Close()
	for i := uint64(0); i < f.count; {
		rec, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		var lineErr *records.LineError
		if errors.As(err, &lineErr) {
			continue // the file changed since it was sent
		}
		if err != nil {
			return false
		}
		if !fn(i, rec, rr.Line()) {
			return true
		}
		i++
	}
	return true
}

// noteWriteLock tells the user, as soon as the node says so in the stream's
// response headers, that the ingest waits for the node's write lock and
// who holds it since when.
func noteWriteLock(stream grpc.ClientStream, stderr io.Writer, now func() time.Time) {
	md, err := stream.Header()
	if err != nil {
		return
	}
	by := md.Get(node.HeaderWriteLockHeldBy)
	if len(by) != 1 {
		return
	}
	since := "an unknown time"
	if v := md.Get(node.HeaderWriteLockHeldSince); len(v) == 1 {
		since = echo.Name(v[0])
		if t, err := time.Parse(time.RFC3339, v[0]); err == nil {
			since += " (" + now().Sub(t).Round(time.Second).String() + " ago)"
		}
	}
	fmt.Fprintf(stderr, "waiting: the node's write lock is held by %s since %s, by another ingest or a retraction; this ingest goes on when it is released\n",
		echo.Name(by[0]), since)
}

// lockedWriter serializes writes of several goroutines to w.
type lockedWriter struct {
	mu sync.Mutex // protects w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
