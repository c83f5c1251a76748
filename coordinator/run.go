package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/isa-alliance/fedreport/internal/metrics"
)

// Addresses are the listeners RunAll serves on.
type Addresses struct {
	// Listen is host:port of CoordinatorService (operators, analysts).
	Listen string
	// MemberListen is host:port of AggregationService as Config.MemberCode,
	// for a coordinator one level up; empty serves none. It needs
	// Config.MemberCode and Config.MemberServerTLS.
	MemberListen string
	// MetricsListen is host:port of a plain-HTTP GET /metrics for
	// Prometheus; empty serves none. RunAll then sets Config.Metrics on a
	// registry of its own, with /healthz and /readyz beside /metrics.
	MetricsListen string
	// MetricsCollectors are registered there too (the build, the
	// certificates' expiry).
	MetricsCollectors []prometheus.Collector
}

// Run opens a coordinator with cfg, listens on listenAddr, serves until ctx
// is done and closes everything, the store last. It is RunAll with only the
// coordinator listener.
func Run(ctx context.Context, cfg Config, listenAddr string) error {
	return RunAll(ctx, cfg, Addresses{Listen: listenAddr})
}

// RunAll opens a coordinator with cfg, serves CoordinatorService on
// addrs.Listen, the member API on addrs.MemberListen when set, and runs
// cfg.Schedules, until ctx is done or one of them fails. Running rollups get
// Config.ShutdownTimeout to finish; everything is closed, the store last.
func RunAll(ctx context.Context, cfg Config, addrs Addresses) error {
	if addrs.MemberListen != "" && (cfg.MemberCode == "" || cfg.MemberServerTLS == nil) {
		return errors.New("member listener: needs a member code and a node certificate for it")
	}
	if addrs.MemberListen == "" && cfg.MemberCode != "" {
		return fmt.Errorf("member code %s: give a member listen address for the coordinator one level up", cfg.MemberCode)
	}
	lc := &net.ListenConfig{}
	var metricsLis net.Listener
	var reg *prometheus.Registry
	if addrs.MetricsListen != "" {
		reg = metrics.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			return err
		}
		cfg.Metrics = m
		for _, c := range addrs.MetricsCollectors {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("register metrics: %w", err)
			}
		}
		if metricsLis, err = lc.Listen(ctx, "tcp", addrs.MetricsListen); err != nil {
			return fmt.Errorf("metrics listen %s: %w", addrs.MetricsListen, err)
		}
	}
	// The listeners come before Open, so that a port in use leaves no new,
	// empty data file behind.
	lis, err := lc.Listen(ctx, "tcp", addrs.Listen)
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", addrs.Listen, err), closeListener(metricsLis))
	}
	var memberLis net.Listener
	if addrs.MemberListen != "" {
		if memberLis, err = lc.Listen(ctx, "tcp", addrs.MemberListen); err != nil {
			return errors.Join(fmt.Errorf("member listen %s: %w", addrs.MemberListen, err), lis.Close(), closeListener(metricsLis))
		}
	}
	c, err := Open(cfg)
	if err != nil {
		return errors.Join(err, lis.Close(), closeListener(memberLis), closeListener(metricsLis))
	}
	g, gctx := errgroup.WithContext(ctx)
	// Serve logs the address it serves on, so ":0" shows the real port.
	g.Go(func() error { return c.Serve(gctx, lis) })
	if memberLis != nil {
		g.Go(func() error { return c.ServeMember(gctx, memberLis) })
	}
	g.Go(func() error { return c.RunSchedules(gctx, Clock{}) })
	if cfg.MemberUpdates != nil {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case members := <-cfg.MemberUpdates:
					if _, err := c.ReplaceMembers(members); err != nil {
						c.log.Warn("members not reloaded; the previous ones stay", "err", err)
					}
				}
			}
		})
	}
	if metricsLis != nil {
		c.log.Info("metrics serving", "addr", metricsLis.Addr().String())
		// Ready from here (the coordinator is open and its listeners are
		// bound) until the shutdown starts.
		ready := func() bool { return gctx.Err() == nil }
		g.Go(func() error { return metrics.Serve(gctx, metricsLis, reg, ready) })
	}
	return errors.Join(g.Wait(), c.Close())
}

// closeListener closes lis if there is one.
func closeListener(lis net.Listener) error {
	if lis == nil {
		return nil
	}
	return lis.Close()
}
