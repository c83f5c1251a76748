package node

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isa-alliance/fedreport/internal/metrics"
)

// metricsNamespace prefixes every node metric.
const metricsNamespace = "fedreport_node"

// DisclosureAppendMetric is the histogram of the disclosure log's appends.
const DisclosureAppendMetric = metricsNamespace + "_disclosure_log_append_seconds"

// disclosureAppendBuckets are fine below 10 ms, where a healthy disk's
// fsyncs are and where they decide an Aggregate's latency.
var disclosureAppendBuckets = []float64{
	.00025, .0005, .00075, .001, .0015, .002, .003, .005, .0075, .01,
	.015, .025, .05, .1, .25, .5, 1, 2.5, 5,
}

// Metrics are the node's Prometheus metrics; set Config.Metrics to export
// them. The labels are gRPC method names and codes; no metric carries a
// count, a cell or anything else the node disclosed.
type Metrics struct {
	grpc           *metrics.GRPC
	disclosureTime prometheus.Histogram
}

// NewMetrics registers the node's metrics with reg:
//
//	fedreport_node_disclosure_log_append_seconds                histogram
//	fedreport_node_grpc_server_handled_total{method,code}       counter
//	fedreport_node_grpc_server_handling_seconds{method}         histogram
//	fedreport_node_grpc_server_connections_refused_total{cap}   counter
//
// The first is the time an answered Aggregate spends making its disclosure
// log entry durable (the write transaction with its two fsyncs, and any
// wait for the file's writer) before the answer may leave: on most disks
// the largest part of an Aggregate's latency. One Metrics may serve several
// nodes of one process; they then share its series.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		disclosureTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    DisclosureAppendMetric,
			Help:    "Time to make an answer's disclosure log entry durable (write transaction, fsyncs, wait for the writer) before the answer leaves.",
			Buckets: disclosureAppendBuckets,
		}),
	}
	if err := reg.Register(m.disclosureTime); err != nil {
		return nil, fmt.Errorf("register node metrics: %w", err)
	}
	g, err := metrics.NewGRPC(reg, metricsNamespace)
	if err != nil {
		return nil, err
	}
	m.grpc = g
	return m, nil
}

// observeDisclosure records one durable append. A nil *Metrics records
// nothing.
func (m *Metrics) observeDisclosure(d time.Duration) {
	if m == nil {
		return
	}
	m.disclosureTime.Observe(d.Seconds())
}
