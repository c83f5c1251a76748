package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// run executes the fedreport command line; only main exits.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := newRootCommand()
	cmd.SetArgs(args)
	cmd.SetIn(stdin)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(withNotices(ctx, stderr))
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fedreport",
		Short: "Federated reporting between states that keep their case data at home",
		Long: `fedreport runs a federation in which every member state's node keeps its
records locally and discloses only aggregate counts over mutual TLS, and a
coordinator computes exact, auditable alliance-wide totals.`,
		Version:       readBuildInfo().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("fedreport {{.Version}}\n")
	root.AddCommand(
		newPKICommand(),
		newNodeCommand(),
		newCoordinatorCommand(),
		newIngestCommand(),
		newRetractCommand(),
		newRollupCommand(),
		newRollupsCommand(),
		newMembersCommand(),
		newAuditCommand(),
		newStatusCommand(),
		newBackupCommand(),
		newVerifyCommand(),
		newGenCommand(),
		newDemoCommand(),
		newUICommand(),
		newReportCommand(),
		newVersionCommand(),
	)
	return root
}
