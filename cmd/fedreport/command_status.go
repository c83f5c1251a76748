package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type statusOptions struct {
	nodeClientOptions
	output outputFormat
}

func (o *statusOptions) AddFlags(fs *pflag.FlagSet) {
	o.nodeClientOptions.AddFlags(fs)
	o.output.AddFlags(fs)
}

func newStatusCommand() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status --node ADDR [-o table|json|yaml|csv]",
		Short: "Show a node's records, data version, file size, last write and policy (member admin)",
		Long: `Show what a node holds (member admin, over the admin socket or mTLS): how many
records, its data version, the size of its data file, when the data last
changed (the last ingest or retraction that changed something), how many
answers its disclosure log holds, its disclosure policy and the version it
runs. It is the node's GetNodeStats; it discloses no cell.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := dialNode(o.node, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewNodeAdminServiceClient(conn).GetNodeStats(ctx, &fedreportv1.GetNodeStatsRequest{})
			if err != nil {
				return describeNodeRPCError("status", o.node, err)
			}
			return printStatus(cmd.OutOrStdout(), o.output, resp)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// printStatus prints a node's stats: json and yaml as the response, table
// and csv as field/value rows.
func printStatus(w io.Writer, format outputFormat, st *fedreportv1.GetNodeStatsResponse) error {
	switch format {
	case "json":
		return printJSON(w, st)
	case "yaml":
		return printYAML(w, st)
	}
	p := st.GetPolicy()
	dominance := "off"
	if d := p.GetDominancePercent(); d > 0 {
		dominance = strconv.FormatUint(uint64(d), 10) + "%"
	}
	periods := []string{"calendar months"}
	for _, per := range p.GetPeriods() {
		periods = append(periods, fmt.Sprintf("%s=%s..%s", per.GetName(), per.GetFrom(), per.GetTo()))
	}
	tables := policyTables(p)
	if p != nil && tables == "" {
		tables = "none (totals only)"
	}
	rows := [][2]string{
		{"member", st.GetMember()},
		{"records", strconv.FormatUint(st.GetRecords(), 10)},
		{"data_version", strconv.FormatUint(st.GetDataVersion(), 10)},
		{"last_write", formatTime(st.GetLastWriteTime().AsTime())},
		{"file_size", formatBytes(st.GetFileSizeBytes())},
		{"disclosures", strconv.FormatUint(st.GetDisclosures(), 10)},
		{"counter_cells", strconv.FormatUint(st.GetCounterCells(), 10)},
		{"schema_version", strconv.FormatUint(uint64(st.GetSchemaVersion()), 10)},
		{"software_version", orDash(st.GetSoftwareVersion())},
		{"min_cell_count", strconv.FormatUint(uint64(p.GetMinCellCount()), 10)},
		{"tables", orDash(tables)},
		{"periods", strings.Join(periods, ", ")},
		{"earliest_date", orDash(p.GetEarliestDate())},
		{"dominance", dominance},
	}
	if format == "csv" {
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"field", "value"})
		for _, r := range rows {
			_ = cw.Write(r[:])
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", strings.ToUpper(r[0]), r[1])
	}
	return tw.Flush()
}

// formatBytes gives a size in bytes with its binary-prefixed round figure:
// "2.1 MiB (2203648 bytes)".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}
