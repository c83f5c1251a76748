package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func newMembersCommand() *cobra.Command {
	var o coordinatorClient
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the coordinator's members with reachability and policy (operator, analyst)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd.Context(), func(ctx context.Context, c fedreportv1.CoordinatorServiceClient) error {
				resp, err := c.ListMembers(ctx, &fedreportv1.ListMembersRequest{})
				if err != nil {
					return describeRPCError("list members", err)
				}
				return printMembers(cmd.OutOrStdout(), o.output, resp)
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// membersHeader names the CSV columns. kind came last, after the others,
// so that a consumer reading columns by position reads them as before; the
// table shows it beside the member code.
var membersHeader = []string{"member", "address", "reachable", "last_contact", "data_version", "version", "k", "tables", "periods", "last_error", "kind"}

func printMembers(w io.Writer, format outputFormat, resp *fedreportv1.ListMembersResponse) error {
	switch format {
	case "json":
		return printJSON(w, resp)
	case "yaml":
		return printYAML(w, resp)
	}
	rows := [][]string{}
	kind := len(membersHeader) - 1
	for _, m := range resp.GetMembers() {
		// What a member never told the coordinator is unknown ("-"), not
		// data version 0 or k 0.
		dataVersion, k := "-", "-"
		if m.GetLastContact() != nil {
			dataVersion = fmt.Sprint(m.GetLastDataVersion())
		}
		if m.GetPolicy() != nil {
			k = fmt.Sprint(m.GetPolicy().GetMinCellCount())
		}
		rows = append(rows, []string{m.GetCode(), m.GetAddress(), fmt.Sprint(m.GetReachable()), formatTime(m.GetLastContact().AsTime()),
			dataVersion, orDash(m.GetSoftwareVersion()), k,
			orDash(policyTables(m.GetPolicy())), orDash(policyPeriods(m.GetPolicy())), m.GetLastError(),
			orDash(m.GetKind())})
	}
	if format == "csv" {
		cw := csv.NewWriter(w)
		_ = cw.Write(membersHeader)
		_ = cw.WriteAll(rows)
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(besideMember(membersHeader, kind), "\t")))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(besideMember(r, kind), "\t"))
	}
	return tw.Flush()
}

// besideMember returns row with its column i moved to second place, beside
// the member code, where a reader of the table looks for it.
func besideMember(row []string, i int) []string {
	out := make([]string, 0, len(row))
	out = append(out, row[0], row[i])
	out = append(out, row[1:i]...)
	return append(out, row[i+1:]...)
}

// policyTables lists a member's published tables as --tables spells them;
// empty when it never said.
func policyTables(p *fedreportv1.Policy) string {
	var out []string
	for _, t := range p.GetTables() {
		out = append(out, strings.Join(dimNames(t.GetDimensions()), ","))
	}
	return strings.Join(out, ";")
}

// policyPeriods lists a member's named release periods by name (calendar
// months are always release periods).
func policyPeriods(p *fedreportv1.Policy) string {
	var out []string
	for _, per := range p.GetPeriods() {
		out = append(out, per.GetName())
	}
	return strings.Join(out, ",")
}
