package coordinator

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

const isaYAML = `
members:
  - {code: fr, address: 127.0.0.1:7443}
  - {code: IT, address: 127.0.0.1:7444}
operations:
  - name: isa-2020
    title: Operation ISA 2020
    phases:
      - {from: 2020-01-01, to: 2020-05-30}
      - {name: extension, from: 2020-06-01, to: 2020-09-30}
    members: [fr, IT]
`

func TestFileConfigReadsOperations(t *testing.T) {
	t.Parallel()
	fc, err := ParseFileConfig([]byte(isaYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(fc.Operations) != 1 {
		t.Fatalf("got %d operations, want 1", len(fc.Operations))
	}
	o := fc.Operations[0]
	if o.Name != "isa-2020" || o.Title != "Operation ISA 2020" || o.From() != "2020-01-01" || o.To() != "2020-09-30" {
		t.Errorf("got %+v, want isa-2020 2020-01-01..2020-09-30", o)
	}
	if got := o.Phases[0].Name + "|" + o.Phases[1].Name; got != "phase 1|extension" {
		t.Errorf("phase names: got %s, want phase 1|extension", got)
	}
	if got := strings.Join(o.Members, ","); got != "FR,IT" {
		t.Errorf("members: got %s, want FR,IT (upper-cased)", got)
	}
}

func TestFileConfigRefusesBadOperations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ops, want string }{
		{"a name with capitals", `[{name: ISA, phases: [{from: 2020-01-01, to: 2020-02-01}]}]`, "lower-case"},
		{"no phases", `[{name: isa}]`, "no phases"},
		{"a phase that ends before it starts", `[{name: isa, phases: [{from: 2020-02-01, to: 2020-01-01}]}]`, "ends before it starts"},
		{"overlapping phases", `[{name: isa, phases: [{from: 2020-01-01, to: 2020-02-01}, {from: 2020-02-01, to: 2020-03-01}]}]`, "without overlap"},
		{"a date that does not exist", `[{name: isa, phases: [{from: 2021-02-29, to: 2021-03-01}]}]`, "does not exist"},
		{"a member twice", `[{name: isa, phases: [{from: 2020-01-01, to: 2020-02-01}], members: [FR, fr]}]`, "listed twice"},
		{"an operation twice", `[{name: isa, phases: [{from: 2020-01-01, to: 2020-02-01}]}, {name: isa, phases: [{from: 2020-01-01, to: 2020-02-01}]}]`, "declared twice"},
		{"an unknown key", `[{name: isa, phase: []}]`, "phase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFileConfig([]byte("operations: " + tc.ops))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestOpenRefusesAnOperationOfAnUnregisteredMember(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)})
	cfg.Operations = []Operation{{Name: "isa", Phases: []Phase{{From: "2020-01-01", To: "2020-01-31"}}, Members: []string{"FR", "IT"}}}
	_, err := Open(cfg)
	if err == nil || !strings.Contains(err.Error(), "member IT is not registered") {
		t.Errorf("got %v, want member IT is not registered", err)
	}
}

func TestListOperationsForReadersOnly(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)}, Member{"IT", closedAddr(t)})
	cfg.Operations = []Operation{
		{Name: "isa-2020", Title: "Operation ISA 2020", Phases: []Phase{{From: "2020-01-01", To: "2020-05-30"}, {From: "2020-06-01", To: "2020-09-30"}}},
		{Name: "other", Phases: []Phase{{Name: "all", From: "2021-01-01", To: "2021-12-31"}}, Members: []string{"it"}},
	}
	c := newCoordinator(t, ca, cfg)
	addr := serve(t, c)
	analyst := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	first, err := analyst.ListOperations(t.Context(), &fedreportv1.ListOperationsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	op := first.GetOperations()[0]
	if op.GetName() != "isa-2020" || op.GetFrom() != "2020-01-01" || op.GetTo() != "2020-09-30" || len(op.GetPhases()) != 2 ||
		op.GetPhases()[1].GetName() != "phase 2" || strings.Join(op.GetMembers(), ",") != "FR,IT" {
		t.Errorf("first operation: got %v, want isa-2020 with two phases and every registered member", op)
	}
	second, err := analyst.ListOperations(t.Context(), &fedreportv1.ListOperationsRequest{PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.GetOperations()) != 1 || second.GetOperations()[0].GetName() != "other" || second.GetNextPageToken() != "" ||
		strings.Join(second.GetOperations()[0].GetMembers(), ",") != "IT" {
		t.Errorf("second page: got %v, want operation other of IT alone, and no further page", second)
	}
	node := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Node(td, "FR")))
	if _, err := node.ListOperations(t.Context(), &fedreportv1.ListOperationsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node ListOperations: got %v, want PermissionDenied", err)
	}
}

// A reload may not remove a member an operation takes part in: it is
// refused, naming the member, and the members stay as they were.
func TestReplaceMembersKeepsTheOperationsMembers(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)}, Member{"IT", closedAddr(t)})
	cfg.Operations = []Operation{{Name: "isa", Phases: []Phase{{From: "2020-01-01", To: "2020-01-31"}}, Members: []string{"FR", "IT"}}}
	c := newCoordinator(t, ca, cfg)
	_, err := c.ReplaceMembers([]Member{{Code: "FR", Address: closedAddr(t)}})
	if err == nil || !strings.Contains(err.Error(), "member IT is not registered") {
		t.Fatalf("removing IT, a member of operation isa: got %v, want a refusal naming IT", err)
	}
	if got := c.registry().codes(); !slices.Equal(got, []string{"FR", "IT"}) {
		t.Errorf("after the refused reload the members are %v, want FR and IT", got)
	}
}
