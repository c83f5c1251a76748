package main

import (
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type auditOptions struct {
	nodeClientOptions
	since  string
	output outputFormat
}

func (o *auditOptions) AddFlags(fs *pflag.FlagSet) {
	o.nodeClientOptions.AddFlags(fs)
	fs.StringVar(&o.since, "since", "", "only entries made on or after this day (YYYY-MM-DD, UTC)")
	o.output.AddFlags(fs)
}

func newAuditCommand() *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit --node ADDR [--since DATE] [-o table|json|csv]",
		Short: "List a node's disclosure log: every answer that left the node, to whom, and when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := dialNode(o.node, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			client := fedreportv1.NewNodeAdminServiceClient(conn)
			var entries []*fedreportv1.DisclosureEntry
			token := ""
			for {
				ctx, cancel := callContext(cmd.Context())
				resp, err := client.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{PageSize: 1000, PageToken: token, Since: o.since})
				cancel()
				if err != nil {
					return describeNodeRPCError("audit", o.node, err)
				}
				entries = append(entries, resp.GetEntries()...)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			switch o.output {
			case "json":
				return printJSON(w, &fedreportv1.ListDisclosuresResponse{Entries: entries})
			case "yaml":
				return printYAML(w, &fedreportv1.ListDisclosuresResponse{Entries: entries})
			case "csv":
				cw := csv.NewWriter(w)
				_ = cw.Write([]string{"seq", "time", "caller", "rollup_id", "request", "cells", "suppressed_cells", "data_version", "response_sha256", "prev_hash", "entry_hash"})
				for _, e := range entries {
					req, _ := protojson.Marshal(e.GetRequest())
					_ = cw.Write([]string{strconv.FormatUint(e.GetSeq(), 10), formatTime(e.GetTime().AsTime()), e.GetCaller(), e.GetRollupId(),
						string(req), strconv.Itoa(len(e.GetCells())), strconv.Itoa(suppressedIn(e.GetCells())), strconv.FormatUint(e.GetDataVersion(), 10),
						hex.EncodeToString(e.GetResponseSha256()), hex.EncodeToString(e.GetPrevHash()), hex.EncodeToString(e.GetEntryHash())})
				}
				cw.Flush()
				return cw.Error()
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tCALLER\tROLLUP\tPERIOD\tMETRICS\tBY\tCELLS\tSUPPRESSED\tDATA_VERSION\tHASH")
			for _, e := range entries {
				req := e.GetRequest()
				metrics := records.MetricNames(req.GetMetrics())
				if metrics == "" {
					metrics = "all"
				}
				by := strings.Join(dimNames(req.GetGroupBy()), ",")
				if by == "" {
					by = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s..%s\t%s\t%s\t%d\t%d\t%d\t%s\n", e.GetSeq(), formatTime(e.GetTime().AsTime()), e.GetCaller(),
					orDash(e.GetRollupId()), req.GetFrom(), req.GetTo(), metrics, by, len(e.GetCells()), suppressedIn(e.GetCells()),
					e.GetDataVersion(), shortHash(e.GetEntryHash()))
			}
			return tw.Flush()
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func suppressedIn(cells []*fedreportv1.Cell) int {
	n := 0
	for _, c := range cells {
		if c.GetSuppressedCells() > 0 {
			n++
		}
	}
	return n
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
