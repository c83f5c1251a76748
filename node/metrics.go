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
	ingests        *prometheus.CounterVec // by outcome
	dataVersion    prometheus.Gauge
	lastWrite      prometheus.Gauge
}

// Outcomes of an ingest stream, the label of IngestStreamsMetric.
const (
	IngestCommitted = "committed"
	IngestFailed    = "failed"
)

// IngestStreamsMetric counts ingest streams by outcome.
const IngestStreamsMetric = metricsNamespace + "_ingest_streams_total"

// NewMetrics registers the node's metrics with reg:
//
//	fedreport_node_disclosure_log_append_seconds                histogram
//	fedreport_node_ingest_streams_total{outcome}                counter: committed, failed
//	fedreport_node_data_version                                 gauge
//	fedreport_node_last_write_timestamp_seconds                 gauge: Unix time, 0 for none
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
	m.ingests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: IngestStreamsMetric,
		Help: "Ingest streams ended, by outcome: committed (stored whole, changing something or not) or failed (refused or cut off; nothing stored).",
	}, []string{"outcome"})
	m.ingests.WithLabelValues(IngestCommitted)
	m.ingests.WithLabelValues(IngestFailed)
	m.dataVersion = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricsNamespace + "_data_version",
		Help: "The node's data version: it grows by one with every committed write that changes the data.",
	})
	m.lastWrite = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricsNamespace + "_last_write_timestamp_seconds",
		Help: "When the last write that changed the data (an ingest or a retraction) was committed, in Unix seconds; 0 when none is recorded.",
	})
	for _, c := range []prometheus.Collector{m.disclosureTime, m.ingests, m.dataVersion, m.lastWrite} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register node metrics: %w", err)
		}
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

// ingestEnded counts an ingest stream by outcome. A nil *Metrics records
// nothing.
func (m *Metrics) ingestEnded(outcome string) {
	if m == nil {
		return
	}
	m.ingests.WithLabelValues(outcome).Inc()
}

// wrote notes the data version and last write time of the store, at start
// and after every committed write. A nil *Metrics records nothing.
func (m *Metrics) wrote(dataVersion uint64, at time.Time) {
	if m == nil {
		return
	}
	m.dataVersion.Set(float64(dataVersion))
	if !at.IsZero() {
		m.lastWrite.Set(float64(at.UnixNano()) / 1e9)
	}
}
