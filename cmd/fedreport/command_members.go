package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type membersOptions struct {
	coordinator string
	tls         tlsOptions
	output      outputFormat
}

func (o *membersOptions) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.coordinator)
	o.tls.AddFlags(fs)
	o.output.AddFlags(fs)
}

func newMembersCommand() *cobra.Command {
	var o membersOptions
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the coordinator's members with reachability and policy (operator, analyst)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := dialCoordinator(o.coordinator, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewCoordinatorServiceClient(conn).ListMembers(ctx, &fedreportv1.ListMembersRequest{})
			if err != nil {
				return describeRPCError("list members", err)
			}
			w := cmd.OutOrStdout()
			if o.output == "json" {
				return printJSON(w, resp)
			}
			sep := "\t"
			if o.output == "csv" {
				sep = ","
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			out := fmt.Fprintf
			header := []string{"MEMBER", "ADDRESS", "REACHABLE", "LAST_CONTACT", "DATA_VERSION", "VERSION", "K", "DIMENSIONS", "LAST_ERROR"}
			if o.output == "csv" {
				for i := range header {
					header[i] = strings.ToLower(header[i])
				}
			}
			out(tw, "%s\n", strings.Join(header, sep))
			for _, m := range resp.GetMembers() {
				row := []string{m.GetCode(), m.GetAddress(), fmt.Sprint(m.GetReachable()), formatTime(m.GetLastContact().AsTime()),
					fmt.Sprint(m.GetLastDataVersion()), m.GetSoftwareVersion(), fmt.Sprint(m.GetPolicy().GetMinCellCount()),
					strings.Join(dimNames(m.GetPolicy().GetAllowedDimensions()), "+"), m.GetLastError()}
				if o.output == "csv" {
					for i, f := range row {
						if strings.ContainsAny(f, ",\"\n") {
							row[i] = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
						}
					}
				}
				out(tw, "%s\n", strings.Join(row, sep))
			}
			return tw.Flush()
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
