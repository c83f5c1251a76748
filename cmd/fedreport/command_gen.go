package main

import (
	"bufio"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type genOptions struct {
	member   string
	n        int
	seed     int64
	from, to string
}

func (o *genOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.member, "member", "", "member code the record ids belong to (FR, IT, ...)")
	fs.IntVar(&o.n, "records", 1000, "how many records")
	fs.Int64Var(&o.seed, "seed", 1, "random seed; the same seed gives the same records")
	fs.StringVar(&o.from, "from", "2020-01-01", "first day of the records")
	fs.StringVar(&o.to, "to", "2020-09-30", "last day of the records")
}

func newGenCommand() *cobra.Command {
	var o genOptions
	cmd := &cobra.Command{
		Use:   "gen --member FR --records N [--seed S]",
		Short: "Write synthetic records as CSV on stdout (for trials and benchmarks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.member = identity.UpperMember(o.member)
			if !identity.ValidMember(o.member) {
				return fmt.Errorf("--member %s: want a member code of 2-8 upper-case letters or digits", echo.Quote(o.member))
			}
			if o.n < 0 {
				return fmt.Errorf("--records %d: must not be negative", o.n)
			}
			from, err := records.ParseDate(o.from)
			if err != nil {
				return fmt.Errorf("--from %s %s", echo.Quote(o.from), err.(*records.FieldError).Problem)
			}
			to, err := records.ParseDate(o.to)
			if err != nil {
				return fmt.Errorf("--to %s %s", echo.Quote(o.to), err.(*records.FieldError).Problem)
			}
			if to < from {
				return fmt.Errorf("--to %q is before --from %s (want --from <= --to)", o.to, o.from)
			}
			bw := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<16)
			w := records.NewCSVWriter(bw)
			// The ids carry the seed, so that the records of two seeds
			// can be loaded into one node side by side rather than the
			// second replacing the first.
			var n uint64
			emit := func(r *fedreportv1.Record) error {
				n++
				r.RecordId = records.SeededRecordID(o.member, o.seed, n)
				return w.Write(r)
			}
			if err := records.Gen(o.member, o.n, o.seed, records.DayTime(from), records.DayTime(to), emit); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			return bw.Flush()
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
