package node

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestMetricsTimeDisclosuresAndCountCalls(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tn := startLoadedNode(t, Config{Metrics: m})
	ctx := callCtx(t)
	agg := fedreportv1.NewAggregationServiceClient(tn.dial(t, identity.Coordinator(td, "main")))
	for range 3 {
		if _, err := agg.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30",
			GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}}); err != nil {
			t.Fatal(err)
		}
	}
	// A refused answer is logged nowhere, so it is not timed.
	if _, err := agg.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30",
		GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_VICTIM_AGE, fedreportv1.Dimension_DIMENSION_CHANNEL}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("an unpublished cross: got %v, want FailedPrecondition", err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var appends uint64
	var seconds float64
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "fedreport_node_") {
			// Labels are bounded vocabularies, never a count (cap is
			// listener or source, outcome committed or failed).
			for _, metric := range f.GetMetric() {
				for _, l := range metric.GetLabel() {
					if !slices.Contains([]string{"method", "code", "cap", "outcome"}, l.GetName()) {
						t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), l.GetValue())
					}
				}
			}
		}
		if f.GetName() == DisclosureAppendMetric {
			h := f.GetMetric()[0].GetHistogram()
			appends, seconds = h.GetSampleCount(), h.GetSampleSum()
		}
	}
	if appends != 3 || seconds <= 0 {
		t.Errorf("%s: got %d appends taking %vs, want 3 appends taking some time", DisclosureAppendMetric, appends, seconds)
	}

	aggregate, ingest := fedreportv1.AggregationService_Aggregate_FullMethodName, fedreportv1.NodeAdminService_IngestRecords_FullMethodName
	want := `
# HELP fedreport_node_grpc_server_handled_total gRPC calls handled, by full method name and status code.
# TYPE fedreport_node_grpc_server_handled_total counter
fedreport_node_grpc_server_handled_total{code="FailedPrecondition",method="` + aggregate + `"} 1
fedreport_node_grpc_server_handled_total{code="OK",method="` + aggregate + `"} 3
fedreport_node_grpc_server_handled_total{code="OK",method="` + ingest + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fedreport_node_grpc_server_handled_total"); err != nil {
		t.Error(err)
	}
}
