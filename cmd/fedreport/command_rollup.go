package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type rollupOptions struct {
	coordinatorClient
	from, to string
	metrics  string
	by       string
	rerun    string
	// operation and phase take the window from an operation the
	// coordinator's configuration names (ListOperations).
	operation string
	phase     string
}

func (o *rollupOptions) AddFlags(fs *pflag.FlagSet) {
	o.coordinatorClient.AddFlags(fs)
	fs.StringVar(&o.from, "from", "", "first day counted, YYYY-MM-DD")
	fs.StringVar(&o.to, "to", "", "last day counted, YYYY-MM-DD (inclusive)")
	fs.StringVar(&o.metrics, "metrics", "", "comma-separated metrics (default: all): arrests, victims_identified, sites_blocked, judicial_referrals, reports_received")
	fs.StringVar(&o.by, "by", "", "comma-separated dimensions to group by: member, month, offence, channel, victim_age")
	fs.StringVar(&o.rerun, "rerun", "", "run the request of stored rollup ID again and report, per member, whether its data changed since")
	fs.StringVar(&o.operation, "operation", "", "take --from and --to from this operation of the coordinator's configuration (the whole operation, or --phase)")
	fs.StringVar(&o.phase, "phase", "", "with --operation: the phase's number (1, 2, ...) or name")
}

func (o *rollupOptions) spec() (*fedreportv1.RollupSpec, error) {
	if o.from == "" || o.to == "" {
		return nil, fmt.Errorf("--from and --to are required (YYYY-MM-DD, inclusive)")
	}
	spec := &fedreportv1.RollupSpec{From: o.from, To: o.to}
	// No record is dated after today (UTC), so a window that starts later
	// counts nothing: refuse it here rather than store zeros as a result.
	// YYYY-MM-DD strings sort as dates; a malformed one is the
	// coordinator's to refuse.
	if today := records.DateString(records.DayOf(records.Today())); o.from > today && len(o.from) == len(today) {
		return nil, fmt.Errorf("--from %s is after today (%s, UTC): no record can be dated then, so the rollup would count nothing; start the window on or before today", echo.Name(o.from), today)
	}
	var err error
	if spec.Metrics, err = records.ParseMetrics(o.metrics); err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	if spec.GroupBy, err = records.ParseDimensions(o.by); err != nil {
		return nil, fmt.Errorf("--by: %w", err)
	}
	return spec, nil
}

func newRollupCommand() *cobra.Command {
	var o rollupOptions
	cmd := &cobra.Command{
		Use:   "rollup --coordinator ADDR (--from DATE --to DATE | --operation NAME [--phase N]) [--metrics m1,m2] [--by member,month] [-o table|json|csv]",
		Short: "Run a rollup across every member (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.rerun != "" {
				if o.from != "" || o.to != "" || o.metrics != "" || o.by != "" {
					return fmt.Errorf("--rerun takes the request of the stored rollup; drop --from, --to, --metrics and --by")
				}
				return o.call(cmd.Context(), func(ctx context.Context, c fedreportv1.CoordinatorServiceClient) error {
					return rerunRollup(ctx, c, o.rerun, o.output, cmd.OutOrStdout(), cmd.ErrOrStderr())
				})
			}
			if o.operation != "" {
				if o.from != "" || o.to != "" {
					return fmt.Errorf("--operation gives the window; drop --from and --to")
				}
				o.from, o.to = "-", "-" // resolved from the coordinator below
			} else if o.phase != "" {
				return fmt.Errorf("--phase needs --operation NAME")
			}
			spec, err := o.spec()
			if err != nil {
				return err
			}
			if today := records.DateString(records.DayOf(records.Today())); spec.GetTo() > today && len(spec.GetTo()) == len(today) {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: --to %s is after today (%s, UTC): the rollup counts the records the members hold now, up to today; "+
					"run it again after %s (fedreport rollup --rerun ID) for the whole window\n", echo.Name(spec.GetTo()), today, echo.Name(spec.GetTo()))
			}
			return o.call(cmd.Context(), func(ctx context.Context, c fedreportv1.CoordinatorServiceClient) error {
				if o.operation != "" {
					op, err := findOperation(ctx, c, o.operation)
					if err != nil {
						return err
					}
					if spec.From, spec.To, _, err = coordinator.OperationWindow(op, o.phase); err != nil {
						return err
					}
				}
				resp, err := c.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
				if err != nil {
					return describeRPCError("rollup", err)
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

// rerunRollup starts a rollup with the request of stored rollup id and
// reports, per member, whether its data version moved since (the FULL view
// has them): under the table, or on stderr for json and csv, whose stdout
// stays one document a program can read.
func rerunRollup(ctx context.Context, c fedreportv1.CoordinatorServiceClient, id string, format outputFormat, w, stderr io.Writer) error {
	old, err := c.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: id, View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
	if err != nil {
		return describeRPCError("rerun", err)
	}
	resp, err := c.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: old.GetRollup().GetSpec()})
	if err != nil {
		return describeRPCError("rerun", err)
	}
	if err := printRollup(w, format, resp, resp.GetRollup(), ""); err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintln(w)
	} else {
		w = stderr
	}
	fmt.Fprintf(w, "rerun of %s: data versions per member since then\n", id)
	for _, ch := range coordinator.CompareDataVersions(old.GetRollup(), resp.GetRollup()) {
		fmt.Fprintf(w, "  %s\n", ch)
	}
	return rollupOutcome(resp.GetRollup())
}

// rollupOutcome is the error `fedreport rollup` and `rollups show` end with
// after printing r, so that a script sees from the exit code alone what it
// got: nil for COMPLETE (0), exitPartial (3) for PARTIAL totals, and an
// error (1) for a rollup without totals. A RUNNING one (only `rollups show`
// sees it) is not an error yet.
func rollupOutcome(r *fedreportv1.Rollup) error {
	switch r.GetState() {
	case fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, fedreportv1.RollupState_ROLLUP_STATE_RUNNING:
		return nil
	case fedreportv1.RollupState_ROLLUP_STATE_PARTIAL:
		return &exitError{code: exitPartial, err: fmt.Errorf("rollup %s is partial: missing %s; its totals are not the alliance total",
			r.GetId(), strings.Join(r.GetMissingMembers(), ", "))}
	}
	return fmt.Errorf("rollup %s %s: %s", r.GetId(), stateName(r.GetState()), r.GetFailureReason())
}

// findOperation returns the operation name of the coordinator's
// configuration, or an error that lists the operations it has.
func findOperation(ctx context.Context, c fedreportv1.CoordinatorServiceClient, name string) (*fedreportv1.Operation, error) {
	var names []string
	req := &fedreportv1.ListOperationsRequest{}
	for {
		resp, err := c.ListOperations(ctx, req)
		if err != nil {
			return nil, describeRPCError("operations", err)
		}
		for _, op := range resp.GetOperations() {
			if op.GetName() == name {
				return op, nil
			}
			names = append(names, op.GetName())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--operation %s: the coordinator names no operations (operations: in its --config)", name)
	}
	return nil, fmt.Errorf("--operation %s: no such operation; the coordinator names %s", name, strings.Join(names, ", "))
}
