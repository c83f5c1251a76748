package coordinator

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestMetricsCountRollupsMembersAndCalls(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), &fakeNode{aggregate: answers("FR", 5, exact(arrests, 771))})},
		Member{"IT", closedAddr(t)},
	)
	cfg.Metrics = m
	c := newCoordinator(t, ca, cfg)
	addr := serve(t, c)

	operator := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, "alice")))
	analyst := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	for range 2 {
		if _, err := operator.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: arrestsSpec}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := analyst.StartRollup(t.Context(), &fedreportv1.StartRollupRequest{Spec: arrestsSpec}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("analyst StartRollup: got %v, want PermissionDenied", err)
	}

	start := fedreportv1.CoordinatorService_StartRollup_FullMethodName
	for _, tt := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"partial rollups", m.rollups.WithLabelValues("partial"), 2},
		{"FR ok", m.memberStatus.WithLabelValues("FR", "ok"), 2},
		{"IT unreachable", m.memberStatus.WithLabelValues("IT", "unreachable"), 2},
	} {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	for code, want := range map[string]float64{"OK": 2, "PermissionDenied": 1} {
		if got := gathered(t, reg, "fedreport_coordinator_grpc_server_handled_total", map[string]string{"method": start, "code": code}); got != want {
			t.Errorf("StartRollup %s calls: got %v, want %v", code, got, want)
		}
	}
	if got := testutil.CollectAndCount(m.rollupDuration); got != 1 {
		t.Errorf("rollup duration series: got %d, want 1 (partial)", got)
	}
	// No label ever carries a count: the only values are states, codes,
	// statuses and method names.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetValue() == "771" {
					t.Errorf("%s label %s carries a count", f.GetName(), l.GetName())
				}
			}
		}
	}
}

// gathered returns the value of the counter name with exactly labels in reg.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, metric := range f.GetMetric() {
			if len(metric.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range metric.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return metric.GetCounter().GetValue()
		}
	}
	return 0
}
