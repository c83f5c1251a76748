package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/metrics"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/periods"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

const nodeLong = `Run a member node. Its records stay in its bbolt file (--data); only aggregate
counts leave, over mutual TLS, to coordinators and this member's admins, under
the member's disclosure policy, each answer written to the disclosure log first.
Records are loaded with fedreport ingest through the admin socket (or over mTLS
as a member admin).

Every setting is a flag below or a key of the YAML file of --config: the flag's
name with underscores. Flags win over the file; an unknown key is an error that
names it. A file with every key:

  member: FR                        # this member's code; the certificate must be node/FR
  data: /var/lib/fedreport/fr.db    # created if missing
  listen: 0.0.0.0:7443              # mTLS: Aggregate, DescribeNode, member-admin calls
  admin_socket: /run/fedreport/fr.sock  # local administration, mode 0600, no TLS
  cacert: /etc/fedreport/ca.crt
  cert: /etc/fedreport/node-FR.crt
  key: /etc/fedreport/node-FR.key
  crl: /etc/fedreport/ca.crl        # optional revocation list
  min_cell_count: 5                 # policy k: counts 1..k-1 are suppressed
  tables: "offence;channel;victim_age"  # published tables: ";" between tables, "," in a cross; "none": totals only
  periods: "isa-2020=2020-01-01..2020-09-30,phase-1=2020-01-01..2020-05-30"  # named release periods besides months
  dominance_percent: 0  # 1..100: also suppress a cell one record holds more than this share of
  earliest_date: "2020-01-01"       # policy: no request may start earlier
  log_format: text                  # or json
  log_level: info                   # debug, info, warn, error
  metrics_listen: 127.0.0.1:9443    # optional Prometheus /metrics
  aggregate_rate: 2                 # Aggregate calls a second per caller identity (0: no limit)
  aggregate_burst: 30               # Aggregate calls a caller identity may make at once
  ingest_idle_timeout: 1m           # end an ingest stream silent this long (0: never)
  max_connections: 1024             # open connections of the mTLS listener at most (0: no cap)
  max_connections_per_source: 64    # of them from one source IP address (0: no cap)

The policy is the member's alone: no request and no coordinator can change it. A
request outside it is refused with FAILED_PRECONDITION and a reason,
DIMENSION_NOT_ALLOWED or PERIOD_NOT_ALLOWED, whose message says how to change
the request.`

// nodeOptions are the settings of `fedreport node`, as flags or in the
// strict YAML file of --config (same names, with underscores).
type nodeOptions struct {
	config       string
	member       string
	data         string
	listen       string
	adminSocket  string
	tls          tlsOptions
	minCellCount uint32
	tables       string
	periods      string
	dominance    uint32
	earliestDate string
	log          logOptions
	metrics      string
	aggregate    rateOptions
	ingestIdle   time.Duration
	conns        connOptions
}

// nodeConfigFile is the YAML form of nodeOptions.
type nodeConfigFile struct {
	Member            string   `yaml:"member"`
	Data              string   `yaml:"data"`
	Listen            string   `yaml:"listen"`
	AdminSocket       string   `yaml:"admin_socket"`
	CACert            string   `yaml:"cacert"`
	Cert              string   `yaml:"cert"`
	Key               string   `yaml:"key"`
	CRL               string   `yaml:"crl"`
	MinCellCount      *uint32  `yaml:"min_cell_count"`
	Tables            string   `yaml:"tables"`
	Periods           string   `yaml:"periods"`
	DominancePercent  *uint32  `yaml:"dominance_percent"`
	EarliestDate      string   `yaml:"earliest_date"`
	LogFormat         string   `yaml:"log_format"`
	LogLevel          string   `yaml:"log_level"`
	MetricsListen     string   `yaml:"metrics_listen"`
	AggregateRate     *float64 `yaml:"aggregate_rate"`
	AggregateBurst    *int     `yaml:"aggregate_burst"`
	IngestIdleTimeout string   `yaml:"ingest_idle_timeout"`
	MaxConnections    *int     `yaml:"max_connections"`
	MaxConnsPerSource *int     `yaml:"max_connections_per_source"`
}

func (o *nodeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "YAML file with any of the settings below (snake_case keys; unknown keys are an error; flags win)")
	fs.StringVar(&o.member, "member", "", "this node's member code (FR, IT, ...); must match its certificate node/<member>")
	fs.StringVar(&o.data, "data", "", "bbolt data file (created if missing)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7443", "mTLS listen address for aggregates (and member-admin calls)")
	fs.StringVar(&o.adminSocket, "admin-socket", "", "unix socket for local administration (created 0600); empty: none")
	o.tls.AddFlags(fs)
	// The node's certificate is a server's as well as a client's.
	fs.Lookup("cacert").Usage = "CA bundle of the alliance: verifies every caller's certificate (env FEDREPORT_CACERT)"
	fs.Lookup("cert").Usage = "this node's certificate, whose URI SAN is spiffe://<trust-domain>/node/<member> (env FEDREPORT_CERT)"
	fs.Lookup("key").Usage = "this node's private key (env FEDREPORT_KEY)"
	fs.Uint32Var(&o.minCellCount, "min-cell-count", node.DefaultMinCellCount, "policy: k; a cell of 1..k-1 contributing records is suppressed, and so is every cell that would reveal one (3 or more)")
	fs.StringVar(&o.tables, "tables", "offence;channel;victim_age", `policy: the tables published besides the total: ";" between tables, "," in a cross (offence,channel); "none": totals only`)
	fs.StringVar(&o.periods, "periods", "", "policy: named release periods besides calendar months, NAME=FROM..TO joined by commas (isa-2020=2020-01-01..2020-09-30,phase-1=2020-01-01..2020-05-30); nested or disjoint")
	fs.Uint32Var(&o.dominance, "dominance-percent", 0, "policy: also suppress a cell in which one record holds more than this share of the quantity (1..100; 0: off)")
	fs.StringVar(&o.earliestDate, "earliest-date", "2000-01-01", "policy: first day (YYYY-MM-DD) a request may cover; earlier requests are refused with PERIOD_NOT_ALLOWED")
	o.log.AddFlags(fs)
	fs.StringVar(&o.metrics, "metrics-listen", "", "plain-HTTP listen address for Prometheus GET /metrics: calls by method and code, latency, disclosure log append time; never a count (empty: off)")
	o.aggregate = newRateOptions("aggregate", fedreportv1.AggregationService_Aggregate_FullMethodName)
	o.aggregate.AddFlags(fs, "Aggregate", "caller identity (a coordinator, a member admin)")
	fs.DurationVar(&o.ingestIdle, "ingest-idle-timeout", grpcsrv.DefaultIngestIdleTimeout, "end an ingest stream whose client sends nothing for this long, roll it back and release the write lock, on both listeners (0: never)")
	o.conns.AddFlags(fs)
}

func (o *nodeOptions) applyConfig(fs *pflag.FlagSet) error {
	if o.config == "" {
		return nil
	}
	var c nodeConfigFile
	if err := loadStrictYAML(o.config, &c); err != nil {
		return err
	}
	values := map[string]string{
		"member": c.Member, "data": c.Data, "listen": c.Listen, "admin-socket": c.AdminSocket,
		"cacert": c.CACert, "cert": c.Cert, "key": c.Key, "crl": c.CRL, "earliest-date": c.EarliestDate,
		"tables": c.Tables, "periods": c.Periods, "log-format": c.LogFormat, "log-level": c.LogLevel,
		"metrics-listen": c.MetricsListen,
		"aggregate-rate": optionalNumber(c.AggregateRate), "aggregate-burst": optionalNumber(c.AggregateBurst),
		"ingest-idle-timeout": c.IngestIdleTimeout,
		"max-connections":     optionalNumber(c.MaxConnections), "max-connections-per-source": optionalNumber(c.MaxConnsPerSource),
	}
	if c.DominancePercent != nil {
		values["dominance-percent"] = fmt.Sprint(*c.DominancePercent)
	}
	if c.MinCellCount != nil {
		values["min-cell-count"] = fmt.Sprint(*c.MinCellCount)
	}
	return setFromConfig(fs, values)
}

// validatePolicy refuses policy settings the node would otherwise replace
// or that would refuse every request. Neither flag can be 0 or empty by
// default, so such a value is the user's.
func (o *nodeOptions) validatePolicy(now time.Time) error {
	if o.minCellCount == 0 {
		return fmt.Errorf("--min-cell-count 0 (min_cell_count in --config): give %d or more (the default is %d)", node.MinMinCellCount, node.DefaultMinCellCount)
	}
	if o.earliestDate == "" {
		return nil
	}
	if _, err := records.ParseDate(o.earliestDate); err != nil {
		return fmt.Errorf("--earliest-date %s (earliest_date in --config): %w", o.earliestDate, err)
	}
	if today := now.UTC().Format(time.DateOnly); o.earliestDate > today {
		return fmt.Errorf("--earliest-date %s (earliest_date in --config) is in the future: the node would refuse every request; give a day on or before today (%s)", o.earliestDate, today)
	}
	return nil
}

func newNodeCommand() *cobra.Command {
	var o nodeOptions
	cmd := &cobra.Command{
		Use:   "node --member FR --data fr.db --cacert ca.crt --cert node-FR.crt --key node-FR.key [--admin-socket fr.sock]",
		Short: "Run a member node: records stay here, only aggregate counts leave",
		Long:  nodeLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.applyConfig(cmd.Flags()); err != nil {
				return err
			}
			log, err := o.log.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if o.member == "" || o.data == "" {
				return fmt.Errorf("--member and --data are required")
			}
			if err := o.aggregate.validate(); err != nil {
				return err
			}
			if err := o.conns.validate(); err != nil {
				return err
			}
			if o.ingestIdle < 0 {
				return fmt.Errorf("--ingest-idle-timeout %s (ingest_idle_timeout in --config): give a duration such as 1m, or 0 for never", o.ingestIdle)
			}
			if err := o.validatePolicy(time.Now()); err != nil {
				return err
			}
			o.member = identity.UpperMember(o.member)
			tables, err := parseTables(o.tables)
			if err != nil {
				return fmt.Errorf("--tables %q (tables in --config): %w", o.tables, err)
			}
			named, err := parsePeriods(o.periods)
			if err != nil {
				return fmt.Errorf("--periods %q (periods in --config): %w", o.periods, err)
			}
			src, own, err := o.tls.serverFiles(log, o.tls.cert, o.tls.key)
			if err != nil {
				return err
			}
			if own != identity.Node(own.TrustDomain, o.member) {
				return fmt.Errorf("--cert %s is %s; a node of %s needs a certificate for %s (fedreport pki issue --role node --member %s)",
					o.tls.cert, own, o.member, identity.Node(own.TrustDomain, o.member), o.member)
			}
			cfg := node.Config{
				Member:      o.member,
				DataPath:    o.data,
				TrustDomain: own.TrustDomain,
				ServerTLS:   mtls.ServerConfig(src),
				Logger:      log,
				Version:     readBuildInfo().Short(),
				Limits:      nodeLimits(&o.aggregate, o.ingestIdle, &o.conns),
				Policy: node.Policy{
					MinCellCount:     o.minCellCount,
					Tables:           tables,
					Periods:          named,
					DominancePercent: o.dominance,
					EarliestDate:     o.earliestDate,
				},
			}
			return runWithMetrics(cmd.Context(), o.metrics, log, func(ctx context.Context, reg prometheus.Registerer, serving func()) error {
				if reg != nil {
					m, err := node.NewMetrics(reg)
					if err != nil {
						return err
					}
					cfg.Metrics = m
					if err := reg.Register(metrics.CertificateExpiry("main", src.Certificate)); err != nil {
						return err
					}
				}
				cfg.OnServing = serving
				return node.Run(ctx, cfg, o.listen, o.adminSocket)
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// parseTables parses --tables: ";" between tables, "," within a cross;
// "none" publishes totals only.
func parseTables(s string) ([][]fedreportv1.Dimension, error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return [][]fedreportv1.Dimension{}, nil
	}
	out := [][]fedreportv1.Dimension{}
	for _, t := range strings.Split(s, ";") {
		// Only the dimensions a table may have are offered: month and
		// member are dimensions of a request, not of a table.
		for name := range strings.SplitSeq(t, ",") {
			d, err := records.ParseDimension(name)
			if err != nil || d == fedreportv1.Dimension_DIMENSION_MONTH || d == fedreportv1.Dimension_DIMENSION_MEMBER {
				return nil, fmt.Errorf("%s is not a table dimension (want offence, channel, victim_age; months are release periods, members a coordinator's)", echo.Quote(strings.TrimSpace(name)))
			}
		}
		dims, err := records.ParseDimensions(strings.TrimSpace(t))
		if err != nil {
			return nil, err
		}
		out = append(out, dims)
	}
	return out, nil
}

// parsePeriods parses --periods: NAME=FROM..TO joined by commas.
func parsePeriods(s string) ([]periods.Period, error) {
	var out []periods.Period
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, window, ok := strings.Cut(strings.TrimSpace(item), "=")
		from, to, ok2 := strings.Cut(window, "..")
		if !ok || !ok2 || name == "" {
			return nil, fmt.Errorf("%q is not NAME=FROM..TO (phase-1=2020-01-01..2020-05-30)", item)
		}
		f, err := records.ParseDate(from)
		if err != nil {
			return nil, fmt.Errorf("period %s: from: %w", name, err)
		}
		t, err := records.ParseDate(to)
		if err != nil {
			return nil, fmt.Errorf("period %s: to: %w", name, err)
		}
		out = append(out, periods.Period{Name: name, From: f, To: t})
	}
	return out, nil
}

// nodeLimits are the node's listener limits: its Aggregate rate, the
// ingest idle timeout (0 turns it off) and the connection caps.
func nodeLimits(aggregate *rateOptions, ingestIdle time.Duration, conns *connOptions) grpcsrv.Limits {
	l := rateLimits(aggregate)
	conns.apply(&l)
	l.IngestIdleTimeout = ingestIdle
	if ingestIdle == 0 {
		l.IngestIdleTimeout = -1
	}
	return l
}
