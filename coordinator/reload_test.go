package coordinator

import (
	"context"
	"slices"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestReplaceMembersLeavesARunningRollupItsMembers replaces the members
// while a rollup waits on FR: the rollup finishes with FR and IT, the
// members it started with; the next rollup asks FR and ES only; IT's
// connection is closed once the first rollup is done.
func TestReplaceMembersLeavesARunningRollupItsMembers(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	asked, release := make(chan struct{}, 1), make(chan struct{})
	held := answers("FR", 5, exact(fedreportv1.Metric_METRIC_ARRESTS, 10))
	fr := &fakeNode{aggregate: func(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
		select {
		case asked <- struct{}{}:
			<-release
		default:
		}
		return held(ctx, req)
	}}
	it := &fakeNode{aggregate: answers("IT", 5, exact(fedreportv1.Metric_METRIC_ARRESTS, 20))}
	es := &fakeNode{aggregate: answers("ES", 5, exact(fedreportv1.Metric_METRIC_ARRESTS, 30))}
	frAddr := startNode(t, ca, identity.Node(td, "FR"), fr)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{Code: "FR", Address: frAddr}, Member{Code: "IT", Address: startNode(t, ca, identity.Node(td, "IT"), it)}))
	spec := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-31", Metrics: []fedreportv1.Metric{fedreportv1.Metric_METRIC_ARRESTS}}

	first := make(chan *fedreportv1.Rollup, 1)
	go func() {
		r, err := c.StartRollup(context.Background(), spec, "test")
		if err != nil {
			t.Errorf("first rollup: %v", err)
		}
		first <- r
	}()
	<-asked
	changes, err := c.ReplaceMembers([]Member{{Code: "FR", Address: frAddr}, {Code: "ES", Address: startNode(t, ca, identity.Node(td, "ES"), es)}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changes.Added, []string{"ES"}) || !slices.Equal(changes.Removed, []string{"IT"}) || len(changes.Readdressed) != 0 {
		t.Errorf("changes: got %+v, want ES added and IT removed", changes)
	}
	close(release)
	r := <-first
	if got := memberCodes(r); !slices.Equal(got, []string{"FR", "IT"}) || r.GetTotals()[0].GetCount() != 30 {
		t.Errorf("the rollup running across the change: got members %v, total %v; want FR and IT, 30", got, r.GetTotals())
	}
	r, err = c.StartRollup(t.Context(), spec, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := memberCodes(r); !slices.Equal(got, []string{"FR", "ES"}) || r.GetTotals()[0].GetCount() != 40 {
		t.Errorf("the next rollup: got members %v, total %v; want FR and ES, 40", got, r.GetTotals())
	}
	if got := c.Members(); len(got) != 2 || got[1].Code != "ES" {
		t.Errorf("Members: got %v, want FR and ES", got)
	}
}

// memberCodes lists the members of r in order.
func memberCodes(r *fedreportv1.Rollup) []string {
	var out []string
	for _, m := range r.GetMembers() {
		out = append(out, m.GetMember())
	}
	return out
}
