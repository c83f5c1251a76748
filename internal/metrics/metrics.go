// Package metrics holds the Prometheus plumbing fedreport's servers share: a
// gRPC server interceptor pair counting calls by method and code with a
// latency histogram, and the /metrics HTTP listener. Labels are only ever
// method names, status codes and other bounded vocabularies, never counts or
// anything a member disclosed.
package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
)

// shutdownTimeout bounds how long Serve waits for scrapes in progress.
const shutdownTimeout = 5 * time.Second

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// GRPC counts a gRPC server's calls. Methods are the full method names the
// server routes (unknown methods never reach interceptors), so the label set
// stays bounded.
type GRPC struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	refused *prometheus.CounterVec // connections closed at accept, by cap

	// counters and observers keep the series of each (method, code) and
	// method once looked up: WithLabelValues hashes the label values and
	// takes a lock on every call, and every call of a node's Aggregate and
	// of a coordinator's StartRollup passes here. Both sets are bounded
	// like the labels.
	counters  sync.Map // callKey → prometheus.Counter
	observers sync.Map // method → prometheus.Observer
}

// callKey is the labels of a server_handled_total series.
type callKey struct {
	method string
	code   codes.Code
}

// NewGRPC registers gRPC server metrics under namespace (fedreport_coordinator_grpc_...).
func NewGRPC(reg prometheus.Registerer, namespace string) (*GRPC, error) {
	g := &GRPC{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "grpc",
			Name:      "server_handled_total",
			Help:      "gRPC calls handled, by full method name and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "grpc",
			Name:      "server_handling_seconds",
			Help:      "Time to handle a gRPC call, by full method name.",
			// Fine below 5 ms, where a node's Aggregate is.
			Buckets: []float64{.00025, .0005, .001, .002, .003, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method"}),
	}
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Subsystem: "grpc",
		Name:      "server_connections_refused_total",
		Help:      "Connections closed as they were accepted, by the cap they would have passed (listener: the listener's, source: the source address's).",
	}, []string{"cap"})
	// Both series exist from the start, at 0, so that a rate or an alert
	// on them works before the first refusal.
	for _, c := range []string{grpcsrv.CapListener, grpcsrv.CapSource} {
		g.refused.WithLabelValues(c)
	}
	for _, c := range []prometheus.Collector{g.calls, g.latency, g.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register gRPC metrics: %w", err)
		}
	}
	return g, nil
}

func (g *GRPC) observe(method string, start time.Time, err error) {
	elapsed := time.Since(start).Seconds()
	k := callKey{method, status.Code(err)}
	c, ok := g.counters.Load(k)
	if !ok {
		c, _ = g.counters.LoadOrStore(k, g.calls.WithLabelValues(method, k.code.String()))
	}
	c.(prometheus.Counter).Inc()
	o, ok := g.observers.Load(method)
	if !ok {
		o, _ = g.observers.LoadOrStore(method, g.latency.WithLabelValues(method))
	}
	o.(prometheus.Observer).Observe(elapsed)
}

// UnaryServerInterceptor counts unary calls. Chain it before authorization
// so that denied calls are counted too.
func (g *GRPC) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		g.observe(info.FullMethod, start, err)
		return resp, err
	}
}

// StreamServerInterceptor counts streaming calls when they end.
func (g *GRPC) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		g.observe(info.FullMethod, start, err)
		return err
	}
}

// Handler serves the metrics gathered from g in the Prometheus text format
// at GET /metrics, GET /healthz (200 while the process answers: a liveness
// probe) and GET /readyz (200 once ready says the server serves its
// listeners, 503 before and while it shuts down: a readiness probe).
func Handler(g prometheus.Gatherer, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready == nil || !ready() {
			http.Error(w, "not ready: starting or shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve serves Handler(g, ready) on lis (plain HTTP: metrics carry no
// member data, and Prometheus scrapes over the operator's own network) until
// ctx is done, then shuts down within a few seconds. It returns nil after a
// shutdown asked through ctx.
func Serve(ctx context.Context, lis net.Listener, g prometheus.Gatherer, ready func() bool) error {
	srv := &http.Server{
		Handler:           Handler(g, ready),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve metrics %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stop metrics %s: %w", lis.Addr(), err)
	}
	return nil
}

// BuildInfo returns fedreport_build_info, always 1, labelled with the
// fedreport version (with its VCS revision) and the Go version, as
// Prometheus exporters label their build.
func BuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "fedreport_build_info",
		Help:        "Always 1; the labels say which fedreport build runs.",
		ConstLabels: prometheus.Labels{"version": version, "go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}

// CertificateExpiry returns fedreport_tls_certificate_expiry_seconds for the
// certificate of listener (a label: "main", "member"): the seconds until it
// expires, negative once it has. It asks cert at every scrape, so a
// certificate rotated on disk counts as soon as the server uses it.
func CertificateExpiry(listener string, cert func() (*tls.Certificate, error)) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "fedreport_tls_certificate_expiry_seconds",
		Help:        "Seconds until the server's own TLS certificate expires (negative once it has).",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 {
		c, err := cert()
		if err != nil || c.Leaf == nil {
			return math.NaN()
		}
		return time.Until(c.Leaf.NotAfter).Seconds()
	})
}

// ConnectionRefused counts a connection a listener closed at accept for
// passing limit (grpcsrv.CapListener or grpcsrv.CapSource); it is
// grpcsrv.Limits.ConnectionRefused.
func (g *GRPC) ConnectionRefused(limit string) { g.refused.WithLabelValues(limit).Inc() }

// Denied counts a call refused before it reached the interceptors (by an
// authz.Tap), as the interceptors count the calls they see.
func (g *GRPC) Denied(method string, err error) { g.observe(method, time.Now(), err) }
