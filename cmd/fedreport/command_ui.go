package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
	"github.com/isa-alliance/fedreport/ui"
)

type uiOptions struct {
	address string
	tls     tlsOptions
	listen  string
	token   string // tests only: a fixed token
}

func (o *uiOptions) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.address)
	o.tls.AddFlags(fs)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address the dashboard listens on; anything but loopback lets others on the network reach it (with the token), and is warned about")
}

func newUICommand() *cobra.Command {
	var o uiOptions
	cmd := &cobra.Command{
		Use:   "ui [--listen 127.0.0.1:8080] --coordinator ADDR --cacert ca.crt --cert you.crt --key you.key",
		Short: "Serve the operator dashboard on loopback, reading the coordinator with your own certificate",
		Long: `ui serves a dashboard for one person on their own machine: members, rollups, one
rollup, and each operation with its phases side by side as charts. It calls
the coordinator with your certificate, as kubectl proxy does, so it may do
exactly what you may: an analyst reads, an operator also starts rollups.

It listens on 127.0.0.1:8080 unless --listen says otherwise, and admits a
browser only with the token in the URL it prints (then a cookie). Every asset
is in the binary; no network but the coordinator's is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUI(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// runUI dials the coordinator, listens and serves until ctx is done.
func runUI(ctx context.Context, o uiOptions, stdout, stderr io.Writer) error {
	conn, err := dialCoordinator(o.address, o.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	src, err := o.tls.source()
	if err != nil {
		return err
	}
	me, err := mtls.LocalIdentity(src)
	if err != nil {
		return fmt.Errorf("--cert %s: %w", o.tls.cert, err)
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--listen %s: want host:port, as in 127.0.0.1:8080", o.listen)
	}
	srv, err := ui.New(ui.Config{
		Client: fedreportv1.NewCoordinatorServiceClient(conn), Coordinator: o.address, Identity: me, Token: o.token,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	if !ui.IsLoopback(o.listen) {
		fmt.Fprintf(stderr, "warning: --listen %s is not loopback: anyone who can reach it and learns the token acts at the coordinator as %s, over plain HTTP; prefer 127.0.0.1 and an SSH tunnel\n", o.listen, me)
	}
	fmt.Fprintf(stdout, "fedreport ui for %s at coordinator %s\nOpen: %s\n(the token admits this browser; keep the URL to yourself. Ctrl-C stops the dashboard.)\n", me, o.address, srv.URL(lis.Addr().String()))
	return srv.Serve(ctx, lis)
}
