package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type rollupsOptions struct {
	coordinator string
	tls         tlsOptions
	limit       int
	pageToken   string
	output      outputFormat
}

func (o *rollupsOptions) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.coordinator)
	o.tls.AddFlags(fs)
	o.output.AddFlags(fs)
}

func newRollupsCommand() *cobra.Command {
	var o rollupsOptions
	cmd := &cobra.Command{
		Use:   "rollups [show ID]",
		Short: "List stored rollups, newest first, or show one (operator, analyst)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := dialCoordinator(o.coordinator, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewCoordinatorServiceClient(conn).ListRollups(ctx, &fedreportv1.ListRollupsRequest{
				PageSize: int32(o.limit), PageToken: o.pageToken,
			})
			if err != nil {
				return describeRPCError("list rollups", err)
			}
			w := cmd.OutOrStdout()
			switch o.output {
			case "json":
				return printJSON(w, resp)
			case "csv":
				return printRollupCSV(w, resp.GetRollups()...)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tFROM\tTO\tMETRICS\tBY\tMEMBERS_OK\tREQUESTED_BY\tSTARTED")
			for _, r := range resp.GetRollups() {
				ok := len(r.GetMembers()) - len(r.GetMissingMembers())
				metrics := make([]string, 0, len(r.GetSpec().GetMetrics()))
				for _, m := range r.GetSpec().GetMetrics() {
					metrics = append(metrics, records.MetricName(m))
				}
				ms := strings.Join(metrics, ",")
				if ms == "" {
					ms = "all"
				}
				by := strings.Join(dimNames(r.GetSpec().GetGroupBy()), ",")
				if by == "" {
					by = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.GetId(), stateName(r.GetState()),
					r.GetSpec().GetFrom(), r.GetSpec().GetTo(), ms, by, ok, len(r.GetMembers()), r.GetRequestedBy(),
					formatTime(r.GetStartedAt().AsTime()))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if t := resp.GetNextPageToken(); t != "" {
				fmt.Fprintf(w, "more: fedreport rollups --page-token %s\n", t)
			}
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().IntVar(&o.limit, "limit", 20, "how many rollups to list (at most 1000)")
	cmd.Flags().StringVar(&o.pageToken, "page-token", "", "continue a previous listing")
	cmd.AddCommand(newRollupsShowCommand())
	return cmd
}

func newRollupsShowCommand() *cobra.Command {
	var o rollupsOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one stored rollup",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := dialCoordinator(o.coordinator, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewCoordinatorServiceClient(conn).GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: args[0]})
			if err != nil {
				return describeRPCError("show rollup", err)
			}
			return printRollup(cmd.OutOrStdout(), o.output, resp, resp.GetRollup(), "")
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
