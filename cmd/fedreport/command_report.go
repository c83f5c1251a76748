package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
	"github.com/isa-alliance/fedreport/ui"
)

type reportOptions struct {
	address   string
	tls       tlsOptions
	operation string
	out       string
}

func (o *reportOptions) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.address)
	o.tls.AddFlags(fs)
	fs.StringVar(&o.operation, "operation", "", "the operation to report on, as the coordinator's configuration names it (required)")
	fs.StringVarP(&o.out, "output", "o", "report.html", "file to write; - writes to stdout")
}

func newReportCommand() *cobra.Command {
	var o reportOptions
	cmd := &cobra.Command{
		Use:   "report --operation NAME [-o report.html]",
		Short: "Write an operation's report: one self-contained HTML file with its totals and charts",
		Long: `report writes the dashboard's operation view as one HTML file that refers to
nothing outside it (styles inline, charts as inline SVG): title, window and
phases, totals, charts per member and per month, the members covered, the
rollups it shows with the time each was computed, and the legend for bounds.
It reads the latest stored rollups of each window; it starts none. Print it
from a browser for a PDF.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.operation == "" {
				return fmt.Errorf("--operation is required (fedreport rollup --operation NAME runs its rollups)")
			}
			conn, err := dialCoordinator(o.address, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			var buf bytes.Buffer
			if err := ui.WriteReport(ctx, fedreportv1.NewCoordinatorServiceClient(conn), o.operation, &buf); err != nil {
				return describeRPCError("report", err)
			}
			if o.out == "-" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			// Written aside and renamed, so a reader never sees half a report.
			tmp, err := os.CreateTemp(filepath.Dir(o.out), ".report-*.html")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(buf.Bytes()); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Chmod(0o644); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), o.out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d bytes)\n", o.out, buf.Len())
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
