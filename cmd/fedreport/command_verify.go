package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/isa-alliance/fedreport/node"
)

func newVerifyCommand() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "verify --data FILE.db",
		Short: "Check a stopped node's file offline: counters equal the records, disclosure chain intact",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" {
				return fmt.Errorf("--data is required")
			}
			report, err := node.Verify(data)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), report)
			return report.Err()
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the node's bbolt file (the node must be stopped)")
	return cmd
}
