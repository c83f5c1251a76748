package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/metrics"
)

// logOptions are the logging flags of the long-running commands.
type logOptions struct {
	format string
	level  string
}

func (o *logOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		return nil, fmt.Errorf("--log-level %s: want debug, info, warn or error", echo.Quote(o.level))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch o.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %s: want text or json", echo.Quote(o.format))
}

// runWithMetrics runs serve, and when addr is set a Prometheus endpoint on
// it serving the registry serve receives (nil when addr is empty), with the
// build's fedreport_build_info, /healthz, and /readyz, which is ready from
// serve's call of serving until the shutdown starts; either ending stops
// both.
func runWithMetrics(ctx context.Context, addr string, log *slog.Logger, serve func(ctx context.Context, reg prometheus.Registerer, serving func()) error) error {
	if addr == "" {
		return serve(ctx, nil, func() {})
	}
	reg := metrics.NewRegistry()
	if err := reg.Register(metrics.BuildInfo(readBuildInfo().Short())); err != nil {
		return err
	}
	var up atomic.Bool
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	log.Info("metrics serving", "addr", lis.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	ready := func() bool { return up.Load() && gctx.Err() == nil }
	g.Go(func() error { return metrics.Serve(gctx, lis, reg, ready) })
	g.Go(func() error { return serve(gctx, reg, func() { up.Store(true) }) })
	return g.Wait()
}
