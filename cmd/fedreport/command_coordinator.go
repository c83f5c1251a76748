package main

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
)

type coordinatorOptions struct {
	config        string
	data          string
	listen        string
	members       coordinator.MemberList
	memberTimeout time.Duration
	minMembers    int
	tls           tlsOptions
	log           logOptions
}

func (o *coordinatorOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "YAML file (listen, data, members, member_timeout, min_members, cacert, cert, key); unknown keys are an error; flags win")
	fs.StringVar(&o.data, "data", "", "bbolt file for rollup history (created if missing)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7400", "mTLS listen address")
	fs.Var(&o.members, "member", "member node as CODE=host:port; repeat for each member")
	fs.DurationVar(&o.memberTimeout, "member-timeout", 10*time.Second, "deadline for each member's answer in a rollup")
	fs.IntVar(&o.minMembers, "min-members", 0, "quorum: a rollup with fewer members answering is stored as failed (0: no quorum)")
	o.tls.AddFlags(fs)
	o.log.AddFlags(fs)
}

func (o *coordinatorOptions) applyConfig(fs *pflag.FlagSet) error {
	if o.config == "" {
		return nil
	}
	fc, err := coordinator.LoadFileConfig(o.config)
	if err != nil {
		return err
	}
	values := map[string]string{"data": fc.Data, "listen": fc.Listen, "cacert": fc.CACert, "cert": fc.Cert, "key": fc.Key}
	if fc.MemberTimeout > 0 {
		values["member-timeout"] = fc.MemberTimeout.String()
	}
	if fc.MinMembers > 0 {
		values["min-members"] = fmt.Sprint(fc.MinMembers)
	}
	if err := setFromConfig(fs, values); err != nil {
		return err
	}
	if !fs.Changed("member") {
		o.members = fc.Members
	}
	return nil
}

func newCoordinatorCommand() *cobra.Command {
	var o coordinatorOptions
	cmd := &cobra.Command{
		Use:   "coordinator --data coord.db --member FR=127.0.0.1:7443 ... --cacert ca.crt --cert coordinator-main.crt --key coordinator-main.key",
		Short: "Run the coordinator: fan rollups out to the members and keep every result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.applyConfig(cmd.Flags()); err != nil {
				return err
			}
			log, err := o.log.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if o.data == "" {
				return fmt.Errorf("--data is required")
			}
			if len(o.members) == 0 {
				return fmt.Errorf("no members: add --member CODE=host:port for each member node (or members: in --config)")
			}
			if err := coordinator.ValidateMembers(o.members); err != nil {
				return err
			}
			src, err := mtls.NewFiles(o.tls.cacert, o.tls.cert, o.tls.key)
			if err != nil {
				return err
			}
			own, err := ownIdentity(src)
			if err != nil {
				return err
			}
			if own.Role != identity.RoleCoordinator {
				return fmt.Errorf("--cert %s is %s; the coordinator needs a coordinator certificate (fedreport pki issue --role coordinator --name main)", o.tls.cert, own)
			}
			cfg := coordinator.Config{
				DataPath:      o.data,
				Members:       o.members,
				MemberTimeout: o.memberTimeout,
				MinMembers:    o.minMembers,
				ServerTLS:     mtls.ServerConfig(src),
				MemberTLS:     memberTLS(src, own.TrustDomain),
				TrustDomain:   own.TrustDomain,
				Logger:        log,
				Version:       version,
			}
			return coordinator.Run(cmd.Context(), cfg, o.listen)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// memberTLS returns, per member code, a client configuration that accepts
// only that member's node certificate.
func memberTLS(src mtls.Source, trustDomain string) func(string) (*tls.Config, error) {
	return func(code string) (*tls.Config, error) {
		return mtls.ClientConfig(src, mtls.ExpectID(identity.Node(trustDomain, code))), nil
	}
}
