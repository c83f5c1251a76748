package coordinator

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
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

// TestAFloodOfConnectionsIsShedAndCounted serves the coordinator with a cap
// of 8 connections per source address; an operator connects, then 50 idle
// TCP connections come from the same address. The 43 past the cap are
// closed as they are accepted and counted in
// fedreport_coordinator_grpc_server_connections_refused_total{cap="source"},
// and the operator's next call is answered.
func TestAFloodOfConnectionsIsShedAndCounted(t *testing.T) {
	t.Parallel()
	const flood, perSource = 50, 8
	ca := testpki.New(t, td)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)})
	cfg.Metrics = m
	cfg.Limits = grpcsrv.Limits{MaxConnectionsPerSource: perSource}
	c := newCoordinator(t, ca, cfg)
	addr := serve(t, c)
	operator := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Operator(td, "alice")))
	list := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := operator.ListRollups(ctx, &fedreportv1.ListRollupsRequest{}); err != nil {
			t.Fatalf("ListRollups %s: %v", what, err)
		}
	}
	list("before the flood")

	var d net.Dialer
	for range flood {
		// A connection past the cap may be reset before the dial returns.
		if conn, err := d.DialContext(t.Context(), "tcp", addr); err == nil {
			t.Cleanup(func() { conn.Close() })
		}
	}
	refused := func() float64 {
		return gathered(t, reg, "fedreport_coordinator_grpc_server_connections_refused_total", map[string]string{"cap": "source"})
	}
	want := float64(flood - (perSource - 1))
	// The coordinator accepts the flood on its own goroutine: wait for it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for refused() < want && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if got := refused(); got != want {
		t.Errorf("connections refused for their source: got %v, want %v", got, want)
	}
	list("during the flood")
}
