package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/metrics"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type coordinatorOptions struct {
	config          string
	data            string
	listen          string
	members         coordinator.MemberList
	memberTimeout   time.Duration
	minMembers      int
	requireAll      bool
	shutdownTimeout time.Duration
	memberCode      string
	memberListen    string
	memberCert      string
	memberKey       string
	metricsListen   string
	tls             tlsOptions
	log             logOptions
	startRollup     rateOptions
	getRollup       rateOptions
	listRollups     rateOptions
	listMembers     rateOptions
	conns           connOptions
	memberPace      rateOptions // the coordinator's own pace of each member

	schedules  []coordinator.Schedule  // from --config only
	operations []coordinator.Operation // from --config only
}

func (o *coordinatorOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "YAML file with any of these settings (snake_case keys, plus schedules:); unknown keys are an error; flags win")
	fs.StringVar(&o.data, "data", "", "bbolt file for rollup history (created if missing)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7400", "mTLS listen address for operators and analysts")
	fs.Var(memberFlag{&o.members}, "member", "member node as CODE=host:port; repeat for each member")
	fs.DurationVar(&o.memberTimeout, "member-timeout", coordinator.DefaultMemberTimeout, "deadline for each member's answer in a rollup")
	fs.IntVar(&o.minMembers, "min-members", 0, "quorum: a rollup with fewer members answering is stored as failed, without totals (0: no quorum)")
	fs.BoolVar(&o.requireAll, "require-all", false, "quorum: every member must answer, else the rollup is failed")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 0, "on SIGTERM, how long running rollups may finish before they are stored as interrupted (default: member timeout + 1s)")
	fs.StringVar(&o.memberCode, "member-code", "", "serve AggregationService as this member code, for a coordinator one level up (federation of federations)")
	fs.StringVar(&o.memberListen, "member-listen", "", "mTLS listen address of the member API (with --member-code)")
	fs.StringVar(&o.memberCert, "member-cert", "", "node certificate for --member-code, presented on --member-listen")
	fs.StringVar(&o.memberKey, "member-key", "", "key of --member-cert")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "plain-HTTP listen address for Prometheus GET /metrics (empty: off)")
	o.tls.AddFlags(fs)
	o.log.AddFlags(fs)
	o.startRollup = newRateOptions("start-rollup", fedreportv1.CoordinatorService_StartRollup_FullMethodName)
	o.startRollup.AddFlags(fs, "StartRollup", "operator identity")
	o.getRollup = newRateOptions("get-rollup", fedreportv1.CoordinatorService_GetRollup_FullMethodName)
	o.getRollup.AddFlags(fs, "GetRollup", "operator or analyst identity")
	o.listRollups = newRateOptions("list-rollups", fedreportv1.CoordinatorService_ListRollups_FullMethodName)
	o.listRollups.AddFlags(fs, "ListRollups", "operator or analyst identity")
	o.listMembers = newRateOptions("list-members", fedreportv1.CoordinatorService_ListMembers_FullMethodName)
	o.listMembers.AddFlags(fs, "ListMembers", "operator or analyst identity")
	o.conns.AddFlags(fs)
	o.memberPace = rateOptions{flag: "member", rate: coordinator.DefaultMemberRate.PerSecond, burst: coordinator.DefaultMemberRate.Burst}
	fs.Float64Var(&o.memberPace.rate, "member-rate", o.memberPace.rate,
		"Aggregate calls a second the coordinator makes to each member, all rollups together, past --member-burst: the rest wait their turn within the member timeout; keep it at the members' --aggregate-rate (0: no pacing; a member refusing with a RetryInfo is still asked again after its delay)")
	fs.IntVar(&o.memberPace.burst, "member-burst", o.memberPace.burst,
		"Aggregate calls the coordinator makes to each member at once, before --member-rate applies; keep it at the members' --aggregate-burst (at least 1)")
}

// rates are the coordinator's per-identity rate limits.
func (o *coordinatorOptions) rates() []*rateOptions {
	return []*rateOptions{&o.startRollup, &o.getRollup, &o.listRollups, &o.listMembers}
}

// memberFlag is the --member flag: a coordinator.MemberList whose CODE is
// upper-cased first by identity.UpperMember, as every flag and config file
// that takes a member code does (node --member fr, pki issue --member fr,
// --member-code eu and members: in --config are FR and EU).
type memberFlag struct{ *coordinator.MemberList }

func (f memberFlag) Set(s string) error {
	if code, addr, ok := strings.Cut(s, "="); ok {
		s = identity.UpperMember(code) + "=" + addr
	}
	return f.MemberList.Set(s)
}

func (o *coordinatorOptions) applyConfig(fs *pflag.FlagSet) error {
	if o.config == "" {
		return nil
	}
	fc, err := coordinator.LoadFileConfig(o.config)
	if err != nil {
		return err
	}
	values := map[string]string{
		"data": fc.Data, "listen": fc.Listen, "cacert": fc.CACert, "cert": fc.Cert, "key": fc.Key, "crl": fc.CRL,
		"member-code": fc.MemberCode, "member-listen": fc.MemberListen, "member-cert": fc.MemberCert, "member-key": fc.MemberKey,
		"start-rollup-rate": optionalNumber(fc.StartRollupRate), "start-rollup-burst": optionalNumber(fc.StartRollupBurst),
		"get-rollup-rate": optionalNumber(fc.GetRollupRate), "get-rollup-burst": optionalNumber(fc.GetRollupBurst),
		"list-rollups-rate": optionalNumber(fc.ListRollupsRate), "list-rollups-burst": optionalNumber(fc.ListRollupsBurst),
		"list-members-rate": optionalNumber(fc.ListMembersRate), "list-members-burst": optionalNumber(fc.ListMembersBurst),
		"max-connections": optionalNumber(fc.MaxConnections), "max-connections-per-source": optionalNumber(fc.MaxConnectionsPerSource),
		"member-rate": optionalNumber(fc.MemberRate), "member-burst": optionalNumber(fc.MemberBurst),
	}
	set, err := topLevelKeys(o.config)
	if err != nil {
		return err
	}
	if fc.MemberTimeout != 0 || set["member_timeout"] {
		values["member-timeout"] = fc.MemberTimeout.String()
	}
	if fc.ShutdownTimeout > 0 {
		values["shutdown-timeout"] = fc.ShutdownTimeout.String()
	}
	if fc.MinMembers > 0 {
		values["min-members"] = fmt.Sprint(fc.MinMembers)
	}
	if fc.RequireAll {
		values["require-all"] = "true"
	}
	if err := setFromConfig(fs, values); err != nil {
		return err
	}
	if !fs.Changed("member") {
		o.members = fc.Members
	}
	o.schedules = fc.Schedules
	o.operations = fc.Operations
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
			for _, r := range o.rates() {
				if err := r.validate(); err != nil {
					return err
				}
			}
			if err := o.conns.validate(); err != nil {
				return err
			}
			if err := o.memberPace.validate(); err != nil {
				return err
			}
			// The default is 10s, so 0 is the user's; Open would take it
			// as the default.
			if o.memberTimeout <= 0 || o.memberTimeout > grpcsrv.MaxRollupRun {
				return fmt.Errorf("--member-timeout %v (member_timeout in --config): give a duration above 0 and at most %v (members answer a rollup for %v after it starts), such as %v (the default)", o.memberTimeout, grpcsrv.MaxRollupRun, grpcsrv.MaxRollupRun, coordinator.DefaultMemberTimeout)
			}
			if len(o.members) == 0 {
				return fmt.Errorf("no members: add --member CODE=host:port for each member node (or members: in --config)")
			}
			if err := coordinator.ValidateMembers(o.members); err != nil {
				return err
			}
			warnUnresolvable(cmd.Context(), log, o.members)
			src, own, err := o.tls.serverFiles(log, o.tls.cert, o.tls.key)
			if err != nil {
				return err
			}
			if own.Role != identity.RoleCoordinator {
				return fmt.Errorf("--cert %s is %s; the coordinator needs a coordinator certificate (fedreport pki issue --role coordinator --name main)", o.tls.cert, own)
			}
			cfg := coordinator.Config{
				DataPath:        o.data,
				Members:         o.members,
				MemberTimeout:   o.memberTimeout,
				MinMembers:      o.minMembers,
				RequireAll:      o.requireAll,
				ShutdownTimeout: o.shutdownTimeout,
				Schedules:       o.schedules,
				Operations:      o.operations,
				ServerTLS:       mtls.ServerConfig(src),
				MemberTLS:       memberTLS(src, own.TrustDomain),
				TrustDomain:     own.TrustDomain,
				Logger:          log,
				Version:         readBuildInfo().Short(),
				Limits:          rateLimits(o.rates()...),
			}
			o.conns.apply(&cfg.Limits)
			var collectors []prometheus.Collector // for the metrics listener
			cfg.MemberRate = grpcsrv.Rate{PerSecond: o.memberPace.rate, Burst: o.memberPace.burst}
			if o.memberPace.rate == 0 {
				cfg.MemberRate = grpcsrv.Rate{PerSecond: -1}
			}
			if o.memberCode != "" {
				o.memberCode = identity.UpperMember(o.memberCode)
				if o.memberListen == "" || o.memberCert == "" || o.memberKey == "" {
					return fmt.Errorf("--member-code %s needs --member-listen, --member-cert and --member-key (a node certificate for %s)", o.memberCode, o.memberCode)
				}
				msrc, mid, err := o.tls.serverFiles(log, o.memberCert, o.memberKey)
				if err != nil {
					return err
				}
				if want := identity.Node(own.TrustDomain, o.memberCode); mid != want {
					return fmt.Errorf("--member-cert %s is %s, want %s (fedreport pki issue --role node --member %s)", o.memberCert, mid, want, o.memberCode)
				}
				cfg.MemberCode = o.memberCode
				cfg.MemberServerTLS = mtls.ServerConfig(msrc)
				collectors = append(collectors, metrics.CertificateExpiry("member", msrc.Certificate))
			}
			if o.config != "" {
				cfg.MemberUpdates = reloadMembersOnHangup(cmd.Context(), log, o.config, cmd.Flags().Changed("member"))
			}
			addrs := coordinator.Addresses{Listen: o.listen, MemberListen: o.memberListen, MetricsListen: o.metricsListen,
				MetricsCollectors: append(collectors, metrics.BuildInfo(readBuildInfo().Short()), metrics.CertificateExpiry("main", src.Certificate))}
			return coordinator.RunAll(cmd.Context(), cfg, addrs)
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

// resolveTimeout bounds the start-time lookup of each member's host.
const resolveTimeout = 3 * time.Second

// warnUnresolvable logs a warning for each member whose host name does not
// resolve now: its rollups would find it unreachable, for a reason the
// start-up can already name (a typo, a DNS entry not made yet). The member
// is kept; it is asked in every rollup, and counts once its name resolves.
func warnUnresolvable(ctx context.Context, log *slog.Logger, members []coordinator.Member) {
	var g sync.WaitGroup
	for _, m := range members {
		host, _, err := net.SplitHostPort(m.Address)
		if err != nil || net.ParseIP(host) != nil || strings.Contains(m.Address, "://") {
			continue
		}
		g.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			defer cancel()
			if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
				log.Warn("member host does not resolve; its rollups will find it unreachable until it does (check the address)",
					"member", m.Code, "host", host, "err", err)
			}
		})
	}
	g.Wait()
}

// configPoll is how often the coordinator looks whether its --config file
// changed.
const configPoll = 2 * time.Second

// reloadMembersOnHangup reads the members of the config file at path again
// on every SIGHUP, and when the file changes (its size or modification
// time, looked at every configPoll), and sends them on the returned channel,
// until ctx is done. A file that does not load, or lists no member, is
// logged and changes nothing. With --member flags, which win over the file,
// there is nothing to reload: a SIGHUP is logged and ignored.
func reloadMembersOnHangup(ctx context.Context, log *slog.Logger, path string, fromFlags bool) <-chan []coordinator.Member {
	out := make(chan []coordinator.Member, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	stamp := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	go func() {
		defer signal.Stop(hup)
		tick := time.NewTicker(configPoll)
		defer tick.Stop()
		last := stamp()
		for {
			trigger := "SIGHUP"
			select {
			case <-ctx.Done():
				return
			case <-hup:
				last = stamp()
			case <-tick.C:
				now := stamp()
				if now == last || now == "" {
					continue
				}
				last, trigger = now, "config file changed"
			}
			if fromFlags {
				if trigger == "SIGHUP" {
					log.Warn("SIGHUP: the members come from --member flags, which win over --config; nothing reloaded", "config", path)
				}
				continue
			}
			fc, err := coordinator.LoadFileConfig(path)
			if err == nil && len(fc.Members) == 0 {
				err = fmt.Errorf("config %s lists no members", path)
			}
			if err != nil {
				log.Warn("members not reloaded; the previous ones stay", "trigger", trigger, "config", path, "err", err)
				continue
			}
			log.Info("reloading members", "trigger", trigger, "config", path)
			warnUnresolvable(ctx, log, fc.Members)
			select {
			case out <- fc.Members:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
