package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type retractOptions struct {
	nodeClientOptions
	file          string
	ignoreMissing bool
}

func (o *retractOptions) AddFlags(fs *pflag.FlagSet) {
	o.nodeClientOptions.AddFlags(fs)
	fs.StringVar(&o.file, "file", "", "file with one record_id per line (blank lines and lines starting with # are skipped)")
	fs.BoolVar(&o.ignoreMissing, "ignore-missing", false, "retract the ids the node holds and skip the others (already retracted, never ingested), instead of refusing them all")
}

func newRetractCommand() *cobra.Command {
	var o retractOptions
	cmd := &cobra.Command{
		Use:   "retract --node ADDR RECORD_ID... | --file IDS",
		Short: "Remove records from a node; if any id is unknown nothing is removed",
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := append([]string(nil), args...)
			if o.file != "" {
				f, err := os.Open(o.file)
				if err != nil {
					return err
				}
				sc := bufio.NewScanner(f)
				sc.Buffer(make([]byte, 0, 4096), records.MaxJSONLLine+2) // the line and its end
				line := 0
				for sc.Scan() {
					line++
					if id := strings.TrimSpace(sc.Text()); id != "" && !strings.HasPrefix(id, "#") {
						ids = append(ids, id)
					}
				}
				f.Close()
				if errors.Is(sc.Err(), bufio.ErrTooLong) {
					return fmt.Errorf("%s:%d: line is longer than %d bytes (want one record_id per line, at most 128 characters); nothing was retracted", o.file, line+1, records.MaxJSONLLine)
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("%s: %w", o.file, err)
				}
			}
			if len(ids) == 0 {
				return fmt.Errorf("name the record ids to retract, as arguments or with --file")
			}
			conn, err := dialNode(o.node, o.tls)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := callContext(cmd.Context())
			defer cancel()
			resp, err := fedreportv1.NewNodeAdminServiceClient(conn).RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: ids, IgnoreMissing: o.ignoreMissing})
			if err != nil {
				return describeNodeRPCError("retract", o.node, err)
			}
			skipped := ""
			if o.ignoreMissing {
				skipped = fmt.Sprintf(" (%d of the ids not stored, skipped)", resp.GetMissing())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retracted %s%s; data version %d\n", plural(resp.GetRetracted(), "record"), skipped, resp.GetDataVersion())
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
