package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/pki"
)

func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create the alliance CA and issue certificates",
	}
	cmd.AddCommand(newPKIInitCommand(), newPKIIssueCommand())
	return cmd
}

type pkiInitOptions struct {
	dir         string
	trustDomain string
}

func (o *pkiInitOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "directory for ca.crt and ca.key (created 0700)")
	fs.StringVar(&o.trustDomain, "trust-domain", "isa", "SPIFFE trust domain of every identity the CA issues")
}

func newPKIInitCommand() *cobra.Command {
	var o pkiInitOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR [--trust-domain isa]",
		Short: "Create a CA: DIR/ca.crt and DIR/ca.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" {
				return fmt.Errorf("--dir is required")
			}
			if _, err := pki.Init(o.dir, o.trustDomain); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created CA for spiffe://%s in %s and %s\n", o.trustDomain,
				filepath.Join(o.dir, pki.CACertFile), filepath.Join(o.dir, pki.CAKeyFile))
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

type pkiIssueOptions struct {
	dir    string
	role   string
	member string
	name   string
	hosts  []string
}

func (o *pkiIssueOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "directory holding ca.crt and ca.key; the certificate and key are written there")
	fs.StringVar(&o.role, "role", "", "node, coordinator, operator, analyst or member-admin")
	fs.StringVar(&o.member, "member", "", "member code (FR, IT, ...) for node and member-admin")
	fs.StringVar(&o.name, "name", "", "name for coordinator, operator, analyst and member-admin")
	fs.StringSliceVar(&o.hosts, "hosts", nil, "DNS names and IPs of a node or coordinator (default localhost,127.0.0.1)")
}

func newPKIIssueCommand() *cobra.Command {
	var o pkiIssueOptions
	cmd := &cobra.Command{
		Use:   "issue --dir DIR --role ROLE [--member FR] [--name N] [--hosts h1,h2]",
		Short: "Issue a certificate: DIR/<role>[-<member>][-<name>].crt and .key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" || o.role == "" {
				return fmt.Errorf("--dir and --role are required")
			}
			ca, err := pki.Load(o.dir)
			if err != nil {
				return err
			}
			id, err := identity.New(ca.TrustDomain, identity.Role(o.role), strings.ToUpper(o.member), o.name)
			if err != nil {
				return fmt.Errorf("pki issue: %w", err)
			}
			certPath, keyPath, err := ca.IssueToDir(o.dir, id, o.hosts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s\n  certificate %s\n  key         %s\n", id, certPath, keyPath)
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
