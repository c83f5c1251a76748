package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// bigRollup is a finished rollup over n members shaped like the benchmark's
// (BENCHMARKS.md: 200 members, five metrics, ~94 bytes a member), with every
// kind of field set somewhere: suppressed cells, a missing member with a
// reason, months, a failure reason.
func bigRollup(n int, state fedreportv1.RollupState) *fedreportv1.Rollup {
	metrics := []fedreportv1.Metric{
		fedreportv1.Metric_METRIC_ARRESTS, fedreportv1.Metric_METRIC_VICTIMS_IDENTIFIED, fedreportv1.Metric_METRIC_SITES_BLOCKED,
		fedreportv1.Metric_METRIC_JUDICIAL_REFERRALS, fedreportv1.Metric_METRIC_REPORTS_RECEIVED,
	}
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	r := &fedreportv1.Rollup{
		State:       state,
		Spec:        &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"},
		RequestedBy: "spiffe://isa/operator/alice",
		StartedAt:   timestamppb.New(start),
		FinishedAt:  timestamppb.New(start.Add(166 * time.Millisecond)),
	}
	totals := make([]*fedreportv1.Cell, len(metrics))
	for i, m := range metrics {
		totals[i] = &fedreportv1.Cell{Metric: m}
	}
	for i := range n {
		code := fmt.Sprintf("M%03d", i+1)
		res := &fedreportv1.MemberResult{Member: code, Status: fedreportv1.MemberStatus_MEMBER_STATUS_OK,
			DataVersion: uint64(1000 + i), Latency: durationpb.New(time.Duration(800+i) * time.Microsecond),
			MinCellCount: 5, SoftwareVersion: "v1.2.3"}
		if i == n-1 && state == fedreportv1.RollupState_ROLLUP_STATE_PARTIAL {
			res.Status, res.Reason, res.Cells = fedreportv1.MemberStatus_MEMBER_STATUS_TIMEOUT, "no answer within 10s", nil
			r.MissingMembers = append(r.MissingMembers, code)
			r.Members = append(r.Members, res)
			continue
		}
		for j, m := range metrics {
			c := &fedreportv1.Cell{Metric: m, Count: uint64(17*i + j + 5)}
			if (i+j)%7 == 0 {
				c = &fedreportv1.Cell{Metric: m, SuppressedCells: 1}
			}
			if j == 0 {
				c.Month = "2020-03"
			}
			c.LowerBound, c.UpperBound = c.Count, c.Count
			if c.SuppressedCells > 0 {
				c.LowerBound, c.UpperBound = 1, 4
			}
			res.Cells = append(res.Cells, c)
			t := totals[j]
			t.Count += c.Count
			t.SuppressedCells += c.SuppressedCells
			t.LowerBound += c.LowerBound
			t.UpperBound += c.UpperBound
		}
		r.Members = append(r.Members, res)
	}
	if state == fedreportv1.RollupState_ROLLUP_STATE_FAILED {
		r.FailureReason = "only 0 of 2 members answered"
		return r
	}
	r.Totals = totals
	return r
}

// storeFinished stores r as the rollup store s ran and finished; it returns
// the id it got.
func storeFinished(t testing.TB, s *store, r *fedreportv1.Rollup) string {
	t.Helper()
	state := r.GetState()
	r.State = fedreportv1.RollupState_ROLLUP_STATE_RUNNING
	if err := s.create(r); err != nil {
		t.Fatal(err)
	}
	r.State = state
	if state == fedreportv1.RollupState_ROLLUP_STATE_RUNNING {
		return r.GetId()
	}
	if _, err := s.finish(r); err != nil {
		t.Fatal(err)
	}
	return r.GetId()
}

// rawCodec is a client codec that keeps a response's bytes (into a
// *[]byte) instead of decoding them, as a proxy or grpcurl's first step does.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(protocodec.Name).Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: %T, want *[]byte", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return protocodec.Name }

// invokeRaw calls method with req on conn and returns the response's bytes.
func invokeRaw(ctx context.Context, conn *grpc.ClientConn, method string, req proto.Message) ([]byte, error) {
	var b []byte
	err := conn.Invoke(ctx, method, req, &b, grpc.ForceCodecV2(rawCodec{}))
	return b, err
}

// servedIsDecoded calls method with req on conn, keeping the answer's bytes,
// checks that they are the encoding of want (the decoded path's answer) and
// returns them.
func servedIsDecoded(t *testing.T, conn *grpc.ClientConn, method string, req, want proto.Message) []byte {
	t.Helper()
	wantBytes, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := invokeRaw(t.Context(), conn, method, req)
	if err != nil {
		t.Fatalf("%s(%v): %v", method, req, err)
	}
	if !bytes.Equal(got, wantBytes) {
		t.Errorf("%s(%v): got %d bytes, want the %d of the decoded answer, equal", method, req, len(got), len(wantBytes))
	}
	return got
}

func TestEncodedAnswersEqualDecodedOnes(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	var ids []string
	for i, state := range []fedreportv1.RollupState{
		fedreportv1.RollupState_ROLLUP_STATE_COMPLETE,
		fedreportv1.RollupState_ROLLUP_STATE_PARTIAL,
		fedreportv1.RollupState_ROLLUP_STATE_FAILED,
		fedreportv1.RollupState_ROLLUP_STATE_PARTIAL,
		fedreportv1.RollupState_ROLLUP_STATE_COMPLETE,
		fedreportv1.RollupState_ROLLUP_STATE_RUNNING,
	} {
		ids = append(ids, storeFinished(t, c.store, bigRollup(3+i*40, state)))
	}
	addr := serve(t, c)
	conn := dial(t, ca, addr, identity.Analyst(td, "bob"))
	client := fedreportv1.NewCoordinatorServiceClient(conn)
	ref := &server{c: c.Coordinator} // the decoded path
	ctx := t.Context()

	views := []fedreportv1.RollupView{
		fedreportv1.RollupView_ROLLUP_VIEW_UNSPECIFIED,
		fedreportv1.RollupView_ROLLUP_VIEW_BASIC,
		fedreportv1.RollupView_ROLLUP_VIEW_FULL,
	}
	getIDs := append(slices.Clone(ids), "r1") // r1: an unpadded id names r00000001
	for i := range len(getIDs) * len(views) {
		id, view := getIDs[i/len(views)], views[i%len(views)]
		req := &fedreportv1.GetRollupRequest{Id: id, View: view}
		want, err := ref.GetRollup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := c.GetRollup(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if full := view == fedreportv1.RollupView_ROLLUP_VIEW_FULL; full != (len(want.GetRollup().GetMembers()) > 0) ||
			len(want.GetRollup().GetTotals()) != len(stored.GetTotals()) {
			t.Errorf("GetRollup %s in view %v: %d members and %d totals, want %d members (FULL only) and %d totals", id, view,
				len(want.GetRollup().GetMembers()), len(want.GetRollup().GetTotals()), len(stored.GetMembers()), len(stored.GetTotals()))
		}
		got := servedIsDecoded(t, conn, fedreportv1.CoordinatorService_GetRollup_FullMethodName, req, want)
		det, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil || !bytes.Equal(det, got) {
			t.Errorf("GetRollup %s: the answer is not the deterministic encoding of the rollup (%v)", id, err)
		}
		decoded, err := client.GetRollup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(decoded, want) {
			t.Errorf("GetRollup %s: got %v, want %v", id, decoded, want)
		}
	}

	for _, req := range []*fedreportv1.ListRollupsRequest{
		{},
		{PageSize: 2},
		{PageSize: 2, PageToken: pageToken(4), View: fedreportv1.RollupView_ROLLUP_VIEW_FULL},
		{State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL},
		{State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL, View: fedreportv1.RollupView_ROLLUP_VIEW_FULL},
		{PageSize: 1, State: fedreportv1.RollupState_ROLLUP_STATE_COMPLETE, View: fedreportv1.RollupView_ROLLUP_VIEW_BASIC},
		{State: fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED},
		{View: fedreportv1.RollupView_ROLLUP_VIEW_FULL},
	} {
		want, err := ref.ListRollups(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		servedIsDecoded(t, conn, fedreportv1.CoordinatorService_ListRollups_FullMethodName, req, want)
		decoded, err := client.ListRollups(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(decoded, want) {
			t.Errorf("ListRollups(%v): got %d rollups (token %q), want %d (token %q)", req,
				len(decoded.GetRollups()), decoded.GetNextPageToken(), len(want.GetRollups()), want.GetNextPageToken())
		}
	}

	// Errors are those of the decoded path.
	for _, tc := range []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		field  string
	}{
		{"GetRollup of an unknown id", func() error {
			_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: "r00000099"})
			return err
		}, codes.NotFound, reasonRollupNotFound, ""},
		{"GetRollup without an id", func() error {
			_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{})
			return err
		}, codes.InvalidArgument, "", "id"},
		{"ListRollups with a foreign token", func() error {
			_, err := client.ListRollups(ctx, &fedreportv1.ListRollupsRequest{PageToken: "nope!"})
			return err
		}, codes.InvalidArgument, "", "page_token"},
		{"GetRollup in no view", func() error {
			_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: ids[0], View: 7})
			return err
		}, codes.InvalidArgument, "", "view"},
		{"GetRollup without an id, in no view", func() error {
			_, err := client.GetRollup(ctx, &fedreportv1.GetRollupRequest{View: -1})
			if !violates(err, "id") {
				return fmt.Errorf("%w (and no violation of id)", err)
			}
			return err
		}, codes.InvalidArgument, "", "view"},
		{"ListRollups in no view", func() error {
			_, err := client.ListRollups(ctx, &fedreportv1.ListRollupsRequest{View: 3})
			return err
		}, codes.InvalidArgument, "", "view"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.code)
		}
		if tc.reason != "" && reasonOf(err) != tc.reason {
			t.Errorf("%s: reason %q, want %q", tc.name, reasonOf(err), tc.reason)
		}
		if tc.field != "" && !violates(err, tc.field) {
			t.Errorf("%s: got %v, want a field violation of %s", tc.name, err, tc.field)
		}
	}

	// Authorization still applies to the replaced handlers.
	node := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Node(td, "FR")))
	if _, err := node.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: ids[0]}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a node's GetRollup: got %v, want PermissionDenied", err)
	}
	if _, err := node.ListRollups(ctx, &fedreportv1.ListRollupsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a node's ListRollups: got %v, want PermissionDenied", err)
	}
}

// violates reports whether err carries a BadRequest violation of field.
func violates(err error, field string) bool {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

// TestDynamicClientsReadTheSameRollup is what grpcurl does: it learns the
// service from reflection, on the same server, and decodes GetRollup with
// the descriptors it got (dynamicpb), never the generated code.
func TestDynamicClientsReadTheSameRollup(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	id := storeFinished(t, c.store, bigRollup(20, fedreportv1.RollupState_ROLLUP_STATE_PARTIAL))
	want, err := c.GetRollup(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, ca, serve(t, c), identity.Analyst(td, "bob"))
	ctx := t.Context()

	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: fedreportv1.CoordinatorService_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: got %v, %v; want SERVING", hr, err)
	}

	files := reflectFiles(t, conn, fedreportv1.CoordinatorService_ServiceDesc.ServiceName)
	sd, err := files.FindDescriptorByName(protoreflect.FullName(fedreportv1.CoordinatorService_ServiceDesc.ServiceName))
	if err != nil {
		t.Fatal(err)
	}
	method := sd.(protoreflect.ServiceDescriptor).Methods().ByName("GetRollup")
	if method == nil {
		t.Fatal("reflection: no GetRollup")
	}
	// The view as grpcurl users name it, by the enum value's name; no view
	// is the BASIC one.
	viewField := method.Input().Fields().ByName("view")
	if viewField == nil || viewField.Enum() == nil {
		t.Fatal("reflection: GetRollupRequest has no view enum")
	}
	for _, view := range []string{"", "ROLLUP_VIEW_FULL"} {
		req := dynamicpb.NewMessage(method.Input())
		req.Set(method.Input().Fields().ByName("id"), protoreflect.ValueOfString(id))
		wantView := inView(want, false)
		if view != "" {
			v := viewField.Enum().Values().ByName(protoreflect.Name(view))
			if v == nil {
				t.Fatalf("reflection: no %s", view)
			}
			req.Set(viewField, protoreflect.ValueOfEnum(v.Number()))
			wantView = want
		}
		resp := dynamicpb.NewMessage(method.Output())
		if err := conn.Invoke(ctx, fedreportv1.CoordinatorService_GetRollup_FullMethodName, req, resp); err != nil {
			t.Fatal(err)
		}
		// Back to the generated type through the wire form the dynamic client
		// understood: equal to the decoded path's rollup.
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := &fedreportv1.GetRollupResponse{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if len(resp.GetUnknown()) != 0 || !proto.Equal(got.GetRollup(), wantView) {
			t.Errorf("dynamic client, view %q: got %v (unknown %d bytes), want %v", view, got.GetRollup(), len(resp.GetUnknown()), wantView)
		}
	}
}

// reflectFiles asks the server reflection on conn for the file that defines
// symbol and its dependencies.
func reflectFiles(t *testing.T, conn *grpc.ClientConn, symbol string) *protoregistry.Files {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("reflection: got %v after CloseSend, want EOF", err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			t.Fatal(err)
		}
		seen[fd.GetName()] = true
		set.File = append(set.File, fd)
	}
	// Reflection sends the dependencies it has; the well-known types are in
	// every client, as they are in grpcurl.
	for _, fd := range set.GetFile() {
		for _, dep := range fd.GetDependency() {
			if !seen[dep] {
				seen[dep] = true
				set.File = append(set.File, wellKnown(t, dep))
			}
		}
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// wellKnown returns the descriptor of a well-known proto file by path.
func wellKnown(t *testing.T, path string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	for _, fd := range []protoreflect.FileDescriptor{
		timestamppb.File_google_protobuf_timestamp_proto,
		durationpb.File_google_protobuf_duration_proto,
	} {
		if fd.Path() == path {
			return protodesc.ToFileDescriptorProto(fd)
		}
	}
	t.Fatalf("reflection: dependency %s not sent", path)
	return nil
}

func TestStoredStateReadsTheTopLevelOnly(t *testing.T) {
	t.Parallel()
	for _, state := range []fedreportv1.RollupState{
		fedreportv1.RollupState_ROLLUP_STATE_UNSPECIFIED,
		fedreportv1.RollupState_ROLLUP_STATE_RUNNING,
		fedreportv1.RollupState_ROLLUP_STATE_COMPLETE,
		fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED,
	} {
		b, err := marshalRollup(bigRollup(3, state))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := storedState(b); err != nil || got != state {
			t.Errorf("state of a %v rollup: got %v, %v", state, got, err)
		}
	}
	for _, bad := range []string{"\x0a\x05ab", "\x10", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "\x0f"} {
		if _, err := storedState([]byte(bad)); !errors.Is(err, errBadEncoding) {
			t.Errorf("storedState(%q): got %v, want errBadEncoding", bad, err)
		}
	}
}

func TestGetRollupRefusesABrokenStoredRollup(t *testing.T) {
	t.Parallel()
	s := tempStore(t)
	id := storeRollup(t, s, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	seq, _ := parseRollupID(id)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRollups).Put(seqKey(seq), []byte("\x0a\x7fshort"))
	}); err != nil {
		t.Fatal(err)
	}
	called := false
	err := s.view(id, func([]byte) error { called = true; return nil })
	if err == nil || errors.Is(err, ErrRollupNotFound) || called {
		t.Errorf("view of a broken rollup: got %v (fn called: %v), want an error before fn", err, called)
	}
	if _, _, err := s.list(10, 0, 0, true); err == nil {
		t.Error("list over a broken rollup: got no error")
	}
}

func TestEncodedStartRollupEqualsTheDecodedAnswer(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeNode{
		aggregate: answers("FR", 5, exact(arrests, 500), suppressed(victims, 5), exact(sites, 0)),
		describe: func(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
			return &fedreportv1.DescribeNodeResponse{Member: "FR", SoftwareVersion: "fedreport 1.2.3", DataVersion: 7}, nil
		},
	}
	es := &fakeNode{aggregate: answers("ES", 3, exact(arrests, 71), exact(victims, 100), suppressed(sites, 3))}
	cfg := testConfig(t, ca,
		Member{"FR", startNode(t, ca, identity.Node(td, "FR"), fr)},
		Member{"IT", closedAddr(t)},
		Member{"ES", startNode(t, ca, identity.Node(td, "ES"), es)},
	)
	cfg.Metrics = m
	cfg.MemberTimeout = 2 * time.Second // IT's reconnect wait is a quarter of it
	c := newCoordinator(t, ca, cfg)
	addr := serve(t, c)
	operator := dial(t, ca, addr, identity.Operator(td, "alice"))
	client := fedreportv1.NewCoordinatorServiceClient(operator)
	ref := &server{c: c.Coordinator} // the decoded path
	ctx := t.Context()

	// The bytes runRollupStored hands the encoded path, framed as field 1,
	// are what the decoded handler sends for the rollup it returns.
	r, stored, err := c.runRollupStored(ctx, wholeOperation, requester, "", c.memberTimeout)
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.Marshal(&fedreportv1.StartRollupResponse{Rollup: r})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendBytesField(nil, 1, stored, mem.DefaultBufferPool()).Materialize(); !bytes.Equal(got, want) {
		t.Errorf("framed stored bytes: got %d bytes, want the %d of the decoded answer, equal", len(got), len(want))
	}

	for _, spec := range []*fedreportv1.RollupSpec{
		wholeOperation, // PARTIAL: IT is unreachable, with a reason
		{From: "2020-01-01", To: "2020-09-30", Metrics: wholeOperation.GetMetrics(), GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MEMBER}},
	} {
		req := &fedreportv1.StartRollupRequest{Spec: spec}
		got, err := invokeRaw(ctx, operator, fedreportv1.CoordinatorService_StartRollup_FullMethodName, req)
		if err != nil {
			t.Fatalf("StartRollup(%v): %v", spec, err)
		}
		resp := &fedreportv1.StartRollupResponse{}
		if err := proto.Unmarshal(got, resp); err != nil {
			t.Fatal(err)
		}
		id := resp.GetRollup().GetId()
		if resp.GetRollup().GetState() != fedreportv1.RollupState_ROLLUP_STATE_PARTIAL || len(resp.GetRollup().GetTotals()) == 0 {
			t.Errorf("StartRollup %s: got %v with %d totals, want PARTIAL with totals", id, resp.GetRollup().GetState(), len(resp.GetRollup().GetTotals()))
		}
		det, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		if err != nil || !bytes.Equal(got, det) {
			t.Errorf("StartRollup %s: got %d bytes, want the %d of the deterministic encoding of the decoded answer, equal (%v)", id, len(got), len(det), err)
		}
		stored, err := ref.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: id, View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp.GetRollup(), stored.GetRollup()) {
			t.Errorf("StartRollup %s: got %v, want the stored %v", id, resp.GetRollup(), stored.GetRollup())
		}
		// GetRollupResponse holds its rollup in field 1 too: one encoding.
		if b, err := proto.Marshal(stored); err != nil || !bytes.Equal(got, b) {
			t.Errorf("StartRollup %s: the answer differs from the decoded GetRollup answer (%v)", id, err)
		}
	}
	decoded, err := client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: wholeOperation})
	if err != nil {
		t.Fatal(err)
	}
	if want, err := c.GetRollup(ctx, decoded.GetRollup().GetId()); err != nil || !proto.Equal(decoded.GetRollup(), want) {
		t.Errorf("StartRollup through the generated client: got %v, want the stored %v (%v)", decoded.GetRollup(), want, err)
	}
	if got := decoded.GetRollup().GetRequestedBy(); got != requester {
		t.Errorf("requested_by: got %q, want %q", got, requester)
	}

	// Errors are those of the decoded path, and the interceptors (metrics,
	// authorization, limits) see every call.
	analyst := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, addr, identity.Analyst(td, "bob")))
	tooMany := &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"}
	for range grpcsrv.MaxMetrics + 1 {
		tooMany.Metrics = append(tooMany.Metrics, arrests)
	}
	for _, tc := range []struct {
		name   string
		client fedreportv1.CoordinatorServiceClient
		spec   *fedreportv1.RollupSpec
		code   codes.Code
		reason string
		field  string
	}{
		{"an analyst starting a rollup", analyst, wholeOperation, codes.PermissionDenied, "", ""},
		{"a spec without dates", client, &fedreportv1.RollupSpec{}, codes.InvalidArgument, reasonInvalidArgument, "spec.from"},
		{"a spec past the request bounds", client, tooMany, codes.InvalidArgument, grpcsrv.ReasonInvalidArgument, "spec.metrics"},
	} {
		_, err := tc.client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: tc.spec})
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.code)
		}
		if tc.reason != "" && reasonOf(err) != tc.reason {
			t.Errorf("%s: reason %q, want %q", tc.name, reasonOf(err), tc.reason)
		}
		if tc.field != "" && !violates(err, tc.field) {
			t.Errorf("%s: got %v, want a field violation of %s", tc.name, err, tc.field)
		}
	}
	c.Shutdown(ctx) // no rollup runs: it returns at once, and new ones are refused
	if _, err := client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: wholeOperation}); status.Code(err) != codes.Unavailable || reasonOf(err) != reasonUnavailable {
		t.Errorf("StartRollup while shutting down: got %v (reason %q), want Unavailable, %s", err, reasonOf(err), reasonUnavailable)
	}
	start := fedreportv1.CoordinatorService_StartRollup_FullMethodName
	for code, want := range map[string]float64{"OK": 3, "PermissionDenied": 1, "InvalidArgument": 2, "Unavailable": 1} {
		if got := gathered(t, reg, "fedreport_coordinator_grpc_server_handled_total", map[string]string{"method": start, "code": code}); got != want {
			t.Errorf("StartRollup %s calls: got %v, want %v", code, got, want)
		}
	}
	// The in-process rollup and the three served ones: four, all PARTIAL.
	if got := testutil.ToFloat64(m.rollups.WithLabelValues("partial")); got != 4 {
		t.Errorf("partial rollups: got %v, want 4", got)
	}
}

// TestListRollupsPagesFitAClientsLimit lists more big rollups than fit in
// the 4 MiB a gRPC client accepts by default: every page must fit, and the
// pages together must hold every rollup once, newest first, in both paths.
func TestListRollupsPagesFitAClientsLimit(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	c.store.db.NoSync = true
	const n = 250 // ~19 KB each in the FULL view: ~4.7 MB
	for range n {
		storeFinished(t, c.store, bigRollup(200, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE))
	}
	client := fedreportv1.NewCoordinatorServiceClient(dial(t, ca, serve(t, c), identity.Analyst(td, "bob")))
	ref := &server{c: c.Coordinator}
	for _, view := range []fedreportv1.RollupView{fedreportv1.RollupView_ROLLUP_VIEW_FULL, fedreportv1.RollupView_ROLLUP_VIEW_BASIC} {
		var ids []string
		pages := 0
		req := &fedreportv1.ListRollupsRequest{PageSize: maxPageSize, View: view}
		for {
			resp, err := client.ListRollups(t.Context(), req)
			if err != nil {
				t.Fatalf("%v, page %d: %v", view, pages+1, err)
			}
			want, err := ref.ListRollups(t.Context(), req)
			if err != nil || !proto.Equal(resp, want) {
				t.Fatalf("%v, page %d: served %d rollups (next %q), decoded path %d (next %q), %v", view, pages+1,
					len(resp.GetRollups()), resp.GetNextPageToken(), len(want.GetRollups()), want.GetNextPageToken(), err)
			}
			pages++
			for _, r := range resp.GetRollups() {
				ids = append(ids, r.GetId())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(ids) != n || !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) || len(slices.Compact(slices.Clone(ids))) != n {
			t.Errorf("%v: %d pages listed %d ids, want %d distinct, newest first", view, pages, len(ids), n)
		}
		if wantPages := map[fedreportv1.RollupView]int{fedreportv1.RollupView_ROLLUP_VIEW_FULL: 2, fedreportv1.RollupView_ROLLUP_VIEW_BASIC: 1}[view]; pages != wantPages {
			t.Errorf("%v: %d pages, want %d", view, pages, wantPages)
		}
	}
}
