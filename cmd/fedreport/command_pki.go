package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
)

func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Create the alliance CA, issue, list and revoke certificates",
	}
	cmd.AddCommand(newPKIInitCommand(), newPKIIssueCommand(), newPKIListCommand(), newPKIRevokeCommand())
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
			fmt.Fprintf(cmd.OutOrStdout(), "created CA for spiffe://%s in %s and %s, revocation list %s\n", o.trustDomain,
				filepath.Join(o.dir, pki.CACertFile), filepath.Join(o.dir, pki.CAKeyFile), filepath.Join(o.dir, pki.CRLFile))
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
			id, err := identity.New(ca.TrustDomain, identity.Role(o.role), identity.UpperMember(o.member), o.name)
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

type pkiListOptions struct {
	dir    string
	output string
}

func (o *pkiListOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "directory holding ca.crt, index.json and ca.crl")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
}

func newPKIListCommand() *cobra.Command {
	var o pkiListOptions
	cmd := &cobra.Command{
		Use:   "list --dir DIR [-o table|json|yaml]",
		Short: "List the certificates the CA of DIR issued, with expiry and revocation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" {
				return fmt.Errorf("--dir is required")
			}
			if o.output != "table" && o.output != "json" && o.output != "yaml" {
				return fmt.Errorf("%s is not an output format (want table, json or yaml)", echo.Quote(o.output))
			}
			entries, err := pki.List(o.dir)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.output == "json" {
				if entries == nil {
					entries = []pki.Entry{}
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(entries)
			}
			if o.output == "yaml" {
				if entries == nil {
					entries = []pki.Entry{}
				}
				b, err := json.Marshal(entries)
				if err != nil {
					return err
				}
				return printJSONAsYAML(w, b)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IDENTITY\tSERIAL\tNOT AFTER\tSTATUS\tFILE")
			now := time.Now()
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Identity, e.Serial, e.NotAfter.UTC().Format("2006-01-02 15:04Z"), certStatus(e, now), e.File)
			}
			return tw.Flush()
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// certStatus is the STATUS column of `pki list`.
func certStatus(e pki.Entry, now time.Time) string {
	switch left := e.NotAfter.Sub(now); {
	case e.Revoked():
		return fmt.Sprintf("revoked %s (%s)", e.RevokedAt.UTC().Format("2006-01-02"), e.Reason)
	case left <= 0:
		return "expired"
	case left < mtls.ExpiryWarning:
		return fmt.Sprintf("valid, expires in %d days", int(left.Hours()/24))
	default:
		return "valid"
	}
}

type pkiRevokeOptions struct {
	dir    string
	cert   string
	serial string
	reason string
}

func (o *pkiRevokeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "directory holding ca.crt, ca.key and ca.crl; ca.crl is re-signed there")
	fs.StringVar(&o.cert, "cert", "", "certificate file to revoke")
	fs.StringVar(&o.serial, "serial", "", "serial number to revoke, in hexadecimal as 'fedreport pki list' prints it")
	fs.StringVar(&o.reason, "reason", "unspecified", "why: "+strings.Join(pki.ReasonNames(), ", "))
}

func newPKIRevokeCommand() *cobra.Command {
	var o pkiRevokeOptions
	cmd := &cobra.Command{
		Use:   "revoke --dir DIR (--cert FILE | --serial HEX) [--reason key-compromise]",
		Short: "Revoke a certificate: add it to DIR/ca.crl, which servers re-read without a restart",
		Long: `Revoke a certificate: add it to DIR/ca.crl (signed by the CA, CRL number
incremented) and mark it revoked in DIR/index.json.

Every server and client started with --crl pointing at this file (or at a
copy of it, kept up to date) refuses the certificate on its next handshake;
connections already open are closed within the servers' maximum connection
age. A certificate already revoked is left as it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" {
				return fmt.Errorf("--dir is required")
			}
			if (o.cert == "") == (o.serial == "") {
				return fmt.Errorf("give exactly one of --cert FILE and --serial HEX")
			}
			reason, err := pki.ParseReason(o.reason)
			if err != nil {
				return fmt.Errorf("--reason: %w", err)
			}
			req := pki.RevokeRequest{Reason: reason}
			if o.cert != "" {
				b, err := os.ReadFile(o.cert)
				if err != nil {
					return fmt.Errorf("pki revoke: %w", err)
				}
				if req.Cert, err = pki.ParseCertificatePEM(b); err != nil {
					return fmt.Errorf("pki revoke: %s: %w", o.cert, err)
				}
			} else if req.Serial, err = pki.ParseSerial(o.serial); err != nil {
				return fmt.Errorf("--serial: %w", err)
			}
			e, number, err := pki.Revoke(o.dir, req)
			if errors.Is(err, pki.ErrAlreadyRevoked) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s (serial %s) was already revoked; %s is unchanged\n", e.Identity, e.Serial, filepath.Join(o.dir, pki.CRLFile))
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (serial %s, %s)\n  revocation list %s, CRL number %s\n"+
				"servers and clients started with --crl %s refuse it from their next handshake;\n"+
				"copy the file to hosts that read their own copy\n",
				e.Identity, e.Serial, e.Reason, filepath.Join(o.dir, pki.CRLFile), number, filepath.Join(o.dir, pki.CRLFile))
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
