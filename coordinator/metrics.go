package coordinator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isa-alliance/fedreport/internal/metrics"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// metricsNamespace prefixes every coordinator metric.
const metricsNamespace = "fedreport_coordinator"

// Metrics are the coordinator's Prometheus metrics; set Config.Metrics to
// export them. Labels are rollup states, member codes, member statuses and
// gRPC method names and codes: bounded sets, never a count or a cell.
type Metrics struct {
	rollupDuration *prometheus.HistogramVec
	rollups        *prometheus.CounterVec
	memberStatus   *prometheus.CounterVec
	grpc           *metrics.GRPC
}

// NewMetrics registers the coordinator's metrics with reg:
//
//	fedreport_coordinator_rollup_duration_seconds{state}  histogram
//	fedreport_coordinator_rollups_total{state}            counter
//	fedreport_coordinator_member_results_total{member,status} counter
//	fedreport_coordinator_grpc_server_handled_total{method,code} counter
//	fedreport_coordinator_grpc_server_handling_seconds{method}   histogram
//	fedreport_coordinator_grpc_server_connections_refused_total{cap} counter
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		rollupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "rollup_duration_seconds",
			Help:      "Time from a rollup's start to its storage, by final state.",
			Buckets:   []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120},
		}, []string{"state"}),
		rollups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "rollups_total",
			Help:      "Rollups stored, by final state (complete, partial, failed, interrupted).",
		}, []string{"state"}),
		memberStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "member_results_total",
			Help:      "Members' parts in rollups, by member code and status (ok, unreachable, timeout, refused, invalid).",
		}, []string{"member", "status"}),
	}
	for _, c := range []prometheus.Collector{m.rollupDuration, m.rollups, m.memberStatus} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register coordinator metrics: %w", err)
		}
	}
	g, err := metrics.NewGRPC(reg, metricsNamespace)
	if err != nil {
		return nil, err
	}
	m.grpc = g
	return m, nil
}

// observeRollup records a stored rollup. A nil *Metrics records nothing.
func (m *Metrics) observeRollup(r *fedreportv1.Rollup) {
	if m == nil {
		return
	}
	state := rollupStateName(r.GetState())
	m.rollups.WithLabelValues(state).Inc()
	if r.GetStartedAt() != nil && r.GetFinishedAt() != nil {
		m.rollupDuration.WithLabelValues(state).Observe(r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Seconds())
	}
	for _, res := range r.GetMembers() {
		m.memberStatus.WithLabelValues(res.GetMember(), memberStatusName(res.GetStatus())).Inc()
	}
}
