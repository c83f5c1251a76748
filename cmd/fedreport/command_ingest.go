package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// ingestBatch is how many records travel in one stream message.
const ingestBatch = 2000

// maxListedErrors is how many validation errors ingest prints before it only counts.
const maxListedErrors = 20

type ingestOptions struct {
	node   string
	tls    tlsOptions
	format string
}

func (o *ingestOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.node, "node", os.Getenv("FEDREPORT_NODE"), "node admin address: unix:///path/to/node.sock or host:port (env FEDREPORT_NODE)")
	o.tls.AddFlags(fs)
	fs.StringVar(&o.format, "format", "", "csv or jsonl; required for - (stdin), otherwise taken from the file extension")
}

func newIngestCommand() *cobra.Command {
	var o ingestOptions
	cmd := &cobra.Command{
		Use:   "ingest --node ADDR FILE...",
		Short: "Load records from CSV or JSON Lines files into a node, all or nothing",
		Long: `Load records into a node (member admin). Every file of one command travels in
one stream that the node applies atomically: if any line is invalid, nothing is
stored. Re-sending a record_id replaces that record; ingesting the same file twice
changes nothing. FILE may be - for stdin, with --format.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIngest(cmd.Context(), o, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// recordReader is what both file parsers provide.
type recordReader interface {
	Next() (*fedreportv1.Record, error)
}

func openRecords(name, format string, stdin io.Reader) (recordReader, io.Closer, error) {
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
	switch format {
	case "csv":
		return records.NewCSVReader(r, source), c, nil
	case "jsonl":
		return records.NewJSONLReader(r, source), c, nil
	}
	c.Close()
	return nil, nil, fmt.Errorf("--format %q: want csv or jsonl", format)
}

func runIngest(ctx context.Context, o ingestOptions, files []string, stdin io.Reader, stdout, stderr io.Writer) error {
	conn, err := dialNode(o.node, o.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The stream is cancelled on any local error, which makes the node roll it back.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(ctx)
	if err != nil {
		return describeRPCError("ingest", err)
	}
	var (
		sent     uint64
		badLines int
		listed   []string
		start    = time.Now()
		batch    = make([]*fedreportv1.Record, 0, ingestBatch)
	)
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
	for _, name := range files {
		rr, closer, err := openRecords(name, o.format, stdin)
		if err != nil {
			return err
		}
		lastBad := 0
		for {
			rec, err := rr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var lineErr *records.LineError
			if errors.As(err, &lineErr) {
				if lineErr.Line <= lastBad {
					break // a header or read error repeats: the rest of the file cannot be read
				}
				lastBad = lineErr.Line
				badLines++
				if len(listed) < maxListedErrors {
					listed = append(listed, lineErr.Error())
				}
				continue
			}
			if err != nil {
				closer.Close()
				return err
			}
			batch = append(batch, rec)
			if len(batch) == ingestBatch {
				if err := flush(name); err != nil {
					closer.Close()
					return ingestSendError(stream, err)
				}
			}
		}
		if err := flush(name); err != nil {
			closer.Close()
			return ingestSendError(stream, err)
		}
		closer.Close()
	}
	if badLines > 0 {
		cancel()
		msg := strings.Join(listed, "\n")
		if badLines > len(listed) {
			msg += fmt.Sprintf("\n... and %d more", badLines-len(listed))
		}
		return fmt.Errorf("%s\n%d invalid line(s); nothing was stored. Fix them and ingest again", msg, badLines)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return describeRPCError("ingest", err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "ingested %d records: %d new, %d changed, %d unchanged; data version %d (%s, %.0f records/s)\n",
		resp.GetReceived(), resp.GetAdded(), resp.GetChanged(), resp.GetUnchanged(), resp.GetDataVersion(),
		elapsed.Round(time.Millisecond), float64(resp.GetReceived())/max(elapsed.Seconds(), 1e-9))
	return nil
}

// ingestSendError returns the node's reason when a Send fails: a failed
// Send reports only io.EOF, and the status comes from CloseAndRecv.
func ingestSendError(stream fedreportv1.NodeAdminService_IngestRecordsClient, err error) error {
	if errors.Is(err, io.EOF) {
		_, err = stream.CloseAndRecv()
	}
	return describeRPCError("ingest", err)
}
