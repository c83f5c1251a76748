package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type rollupOptions struct {
	coordinator string
	tls         tlsOptions
	from, to    string
	metrics     string
	by          string
	output      outputFormat
}

func (o *rollupOptions) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.coordinator)
	o.tls.AddFlags(fs)
	fs.StringVar(&o.from, "from", "", "first day counted, YYYY-MM-DD")
	fs.StringVar(&o.to, "to", "", "last day counted, YYYY-MM-DD (inclusive)")
	fs.StringVar(&o.metrics, "metrics", "", "comma-separated metrics (default: all): arrests, victims_identified, sites_blocked, judicial_referrals, reports_received")
	fs.StringVar(&o.by, "by", "", "comma-separated dimensions to group by: member, month, offence, channel, victim_age")
	o.output.AddFlags(fs)
}

func newRollupCommand() *cobra.Command {
	var o rollupOptions
	cmd := &cobra.Command{
		Use:   "rollup --coordinator ADDR --from DATE --to DATE [--metrics m1,m2] [--by member,month] [-o table|json|csv]",
		Short: "Run a rollup across every member (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.from == "" || o.to == "" {
				return fmt.Errorf("--from and --to are required (YYYY-MM-DD, inclusive)")
			}
			spec := &fedreportv1.RollupSpec{From: o.from, To: o.to}
			var err error
			if o.metrics != "" {
				if spec.Metrics, err = records.ParseMetrics(o.metrics); err != nil {
					return fmt.Errorf("--metrics: %w", err)
				}
			}
			if o.by != "" {
				if spec.GroupBy, err = records.ParseDimensions(o.by); err != nil {
					return fmt.Errorf("--by: %w", err)
				}
			}
			conn, err := dialCoordinator(o.coordinator, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewCoordinatorServiceClient(conn).StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
			if err != nil {
				return describeRPCError("rollup", err)
			}
			return printRollup(cmd.OutOrStdout(), o.output, resp, resp.GetRollup(), "")
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
