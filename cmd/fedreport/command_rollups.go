package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func newRollupsCommand() *cobra.Command {
	var (
		o         coordinatorClient
		limit     int
		pageToken string
		state     string
	)
	cmd := &cobra.Command{
		Use:   "rollups [show ID]",
		Short: "List stored rollups, newest first, or show one (operator, analyst)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := parseRollupState(state)
			if err != nil {
				return err
			}
			return o.call(cmd.Context(), func(ctx context.Context, c fedreportv1.CoordinatorServiceClient) error {
				resp, err := c.ListRollups(ctx, &fedreportv1.ListRollupsRequest{PageSize: int32(limit), PageToken: pageToken, State: st,
					View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
				if err != nil {
					return describeRPCError("list rollups", err)
				}
				return printRollupList(cmd.OutOrStdout(), o.output, resp, nextPageHint(limit, state))
			})
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().IntVar(&limit, "limit", defaultRollupsLimit, "how many rollups to list (at most 1000)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue a previous listing")
	cmd.Flags().StringVar(&state, "state", "", "only rollups in this state: running, complete, partial, failed or interrupted")
	cmd.AddCommand(newRollupsShowCommand())
	return cmd
}

// rollupListHeader names the columns of `fedreport rollups`, in the table
// (upper case) and in the CSV.
var rollupListHeader = []string{"id", "state", "from", "to", "metrics", "by", "members_ok", "requested_by", "started"}

// printRollupList prints a page of rollups: the table and the CSV have one
// row per rollup, the same columns; json and yaml are the response. hint is
// the command that lists the next page, given its token.
func printRollupList(w io.Writer, format outputFormat, resp *fedreportv1.ListRollupsResponse, hint func(token string) string) error {
	switch format {
	case "json":
		return printJSON(w, resp)
	case "yaml":
		return printYAML(w, resp)
	}
	rows := make([][]string, 0, len(resp.GetRollups()))
	for _, r := range resp.GetRollups() {
		// A rollup cut off by a restart (or still running) holds no member
		// results: how many answered is unknown, not 0 of 0.
		ok := "-"
		if n := len(r.GetMembers()); n > 0 {
			ok = fmt.Sprintf("%d/%d", n-len(r.GetMissingMembers()), n)
		}
		metrics := records.MetricNames(r.GetSpec().GetMetrics())
		if metrics == "" {
			metrics = "all"
		}
		by := strings.Join(dimNames(r.GetSpec().GetGroupBy()), ",")
		// A rollup run to answer another coordinator names that
		// coordinator's rollup, as rollups show does.
		requester := r.GetRequestedBy()
		if id := r.GetCallerRollupId(); id != "" {
			requester += " (its rollup " + id + ")"
		}
		rows = append(rows, []string{r.GetId(), stateName(r.GetState()), r.GetSpec().GetFrom(), r.GetSpec().GetTo(), metrics, orDash(by), ok, requester,
			formatTime(r.GetStartedAt().AsTime())})
	}
	if format == "csv" {
		// The cells of one rollup are `rollups show ID -o csv`. A further
		// page is not announced: stdout stays one CSV document.
		cw := csv.NewWriter(w)
		_ = cw.Write(rollupListHeader)
		for _, row := range rows {
			_ = cw.Write(row)
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(rollupListHeader, "\t")))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(w, "more: %s\n", hint(t))
	}
	return nil
}

// nextPageHint is the command that lists the page after the one shown,
// with the --limit and --state of the listing (the defaults left out).
func nextPageHint(limit int, state string) func(token string) string {
	return func(token string) string {
		cmd := "fedreport rollups"
		if limit != defaultRollupsLimit {
			cmd += fmt.Sprintf(" --limit %d", limit)
		}
		if state != "" {
			cmd += " --state " + state
		}
		return cmd + " --page-token " + token
	}
}

// defaultRollupsLimit is how many rollups `fedreport rollups` lists.
const defaultRollupsLimit = 20

func newRollupsShowCommand() *cobra.Command {
	var o coordinatorClient
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one stored rollup",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd.Context(), func(ctx context.Context, c fedreportv1.CoordinatorServiceClient) error {
				resp, err := c.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: args[0], View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
				if err != nil {
					return describeRPCError("show rollup", err)
				}
				if err := printRollup(cmd.OutOrStdout(), o.output, resp, resp.GetRollup(), ""); err != nil {
					return err
				}
				return rollupOutcome(resp.GetRollup())
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// parseRollupState reads a state name as the table prints it.
func parseRollupState(s string) (fedreportv1.RollupState, error) {
	if s == "" {
		return fedreportv1.RollupState_ROLLUP_STATE_UNSPECIFIED, nil
	}
	v, ok := fedreportv1.RollupState_value["ROLLUP_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("--state %s: want running, complete, partial, failed or interrupted", echo.Quote(s))
	}
	return fedreportv1.RollupState(v), nil
}
