package e2e_test

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// A coordinator's certificate gets answers only within a rollup that can be
// running, on a node and on a coordinator answering as a member; and a
// rollup the coordinator runs is logged by the node with its id and start.
func TestACoordinatorIsAnsweredOnlyWithinARunningRollup(t *testing.T) {
	accLeakCheck(t)
	ca := testpki.New(t, accTD)
	fed := accStartFederation(t, ca, grpcsrv.Limits{})
	ctx := accCtx(t)
	main := identity.Coordinator(accTD, "main")

	// A rollup the coordinator runs: FR logs its id and start.
	r, err := fedreportv1.NewCoordinatorServiceClient(accDial(t, fed.coord.addr, ca.ClientTLS(t, identity.Operator(accTD, "alice"), main))).
		StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: accPeriod})
	if err != nil || r.GetRollup().GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Fatalf("rollup: %v, %v", r.GetRollup().GetState(), err)
	}
	admin := fedreportv1.NewNodeAdminServiceClient(accDial(t, fed.node, ca.ClientTLS(t, identity.MemberAdmin(accTD, "FR", "ops"), accNodeID("FR"))))
	log, err := admin.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(log.GetEntries()); n != 1 {
		t.Fatalf("FR's log: %d entries, want 1", n)
	}
	e := log.GetEntries()[0]
	if e.GetRollupId() != r.GetRollup().GetId() || !e.GetRequest().GetRollupStartedAt().AsTime().Equal(r.GetRollup().GetStartedAt().AsTime()) {
		t.Errorf("FR logged rollup %s started %v, want %s started %v", e.GetRollupId(), e.GetRequest().GetRollupStartedAt().AsTime(),
			r.GetRollup().GetId(), r.GetRollup().GetStartedAt().AsTime())
	}

	// The coordinator's certificate, asking by itself.
	node := fedreportv1.NewAggregationServiceClient(accDial(t, fed.node, ca.ClientTLS(t, main, accNodeID("FR"))))
	member := fedreportv1.NewAggregationServiceClient(accDial(t, fed.coord.memberAddr, ca.ClientTLS(t, identity.Coordinator(accTD, "top"), accNodeID("EU"))))
	ago := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(-d)) }
	for _, tc := range []struct {
		name    string
		id      string
		started *timestamppb.Timestamp
		field   string
	}{
		{"no rollup", "", nil, "rollup_id"},
		{"no start", "r00000001", nil, "rollup_started_at"},
		{"a rollup that is over", "r00000001", ago(20 * time.Minute), "rollup_started_at"},
		{"a start ahead of the clock", "r00000001", ago(-5 * time.Minute), "rollup_started_at"},
	} {
		for name, client := range map[string]fedreportv1.AggregationServiceClient{"node": node, "member": member} {
			_, err := client.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: tc.id, RollupStartedAt: tc.started, From: "2020-01-01", To: "2020-09-30"})
			st := status.Convert(err)
			var reason, field string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					reason = d.GetReason()
				case *errdetails.BadRequest:
					for _, v := range d.GetFieldViolations() {
						field = v.GetField()
					}
				}
			}
			if st.Code() != codes.FailedPrecondition || reason != grpcsrv.ReasonRollupNotRunning || field != tc.field {
				t.Errorf("%s, %s: got %v (reason %q, field %q), want FailedPrecondition %s on %s", name, tc.name, err, reason, field, grpcsrv.ReasonRollupNotRunning, tc.field)
			}
		}
	}
	for name, client := range map[string]fedreportv1.AggregationServiceClient{"node": node, "member": member} {
		if _, err := client.Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000099", RollupStartedAt: ago(time.Minute), From: "2020-01-01", To: "2020-09-30"}); err != nil {
			t.Errorf("%s: a rollup started a minute ago: %v", name, err)
		}
	}
	// The refusals disclosed nothing: FR logged the rollup and the two
	// answers started a minute ago (EU's own rollup asked FR once).
	if log, err := admin.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{}); err != nil || len(log.GetEntries()) != 3 {
		t.Errorf("FR's log after the refusals: %d entries, %v; want 3", len(log.GetEntries()), err)
	}
}
