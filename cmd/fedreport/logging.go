package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

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
// it serving the registry serve receives (nil when addr is empty); either
// ending stops both.
func runWithMetrics(ctx context.Context, addr string, log *slog.Logger, serve func(context.Context, prometheus.Registerer) error) error {
	if addr == "" {
		return serve(ctx, nil)
	}
	reg := metrics.NewRegistry()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	log.Info("metrics serving", "addr", lis.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return metrics.Serve(gctx, lis, reg) })
	g.Go(func() error { return serve(gctx, reg) })
	return g.Wait()
}
