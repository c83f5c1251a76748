package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	if err := s.finish(r); err != nil {
		t.Fatal(err)
	}
	return r.GetId()
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

// TestGetRollupServesEachViewOfTheStoredRollup reads stored rollups of
// every state through the served API in each view, twice (the second read
// comes from the cache): FULL is the rollup as stored, BASIC the same without
// its members. A caller changing what the exported GetRollup returned
// changes nothing another reader sees.
func TestGetRollupServesEachViewOfTheStoredRollup(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	var want []*fedreportv1.Rollup
	for i, state := range []fedreportv1.RollupState{
		fedreportv1.RollupState_ROLLUP_STATE_COMPLETE,
		fedreportv1.RollupState_ROLLUP_STATE_PARTIAL,
		fedreportv1.RollupState_ROLLUP_STATE_FAILED,
		fedreportv1.RollupState_ROLLUP_STATE_RUNNING,
	} {
		r := bigRollup(3+i*40, state)
		storeFinished(t, c.store, r)
		want = append(want, proto.CloneOf(r))
	}
	conn := dial(t, ca, serve(t, c), identity.Analyst(td, "bob"))
	client := fedreportv1.NewCoordinatorServiceClient(conn)
	for round := range 2 {
		for _, w := range want {
			for _, view := range []fedreportv1.RollupView{fedreportv1.RollupView_ROLLUP_VIEW_UNSPECIFIED, fedreportv1.RollupView_ROLLUP_VIEW_BASIC, fedreportv1.RollupView_ROLLUP_VIEW_FULL} {
				resp, err := client.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: w.GetId(), View: view})
				if err != nil {
					t.Fatal(err)
				}
				wantView := w
				if view != fedreportv1.RollupView_ROLLUP_VIEW_FULL {
					wantView = proto.CloneOf(w)
					wantView.Members = nil
				}
				if !proto.Equal(resp.GetRollup(), wantView) {
					t.Errorf("read %d of %s (%v) in view %v: got %d members and %d totals, want %d and %d", round+1, w.GetId(), w.GetState(), view,
						len(resp.GetRollup().GetMembers()), len(resp.GetRollup().GetTotals()), len(wantView.GetMembers()), len(wantView.GetTotals()))
				}
			}
		}
		// A library caller's copy is its own.
		mine, err := c.GetRollup(t.Context(), want[0].GetId())
		if err != nil {
			t.Fatal(err)
		}
		mine.Totals[0].Count = 999999
		mine.Members = nil
	}
	list, err := client.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range list.GetRollups() {
		if w := want[len(want)-1-i]; !proto.Equal(r, w) {
			t.Errorf("ListRollups FULL, rollup %s: got %d members, want it as stored with %d", w.GetId(), len(r.GetMembers()), len(w.GetMembers()))
		}
	}
}

// TestRollupCacheKeepsTheRecentlyReadWithinItsBudget fills a small cache
// past its budget: the least recently read rollups go first, and a rollup
// larger than the whole budget is never kept.
func TestRollupCacheKeepsTheRecentlyReadWithinItsBudget(t *testing.T) {
	t.Parallel()
	one := bigRollup(3, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	size := proto.Size(one)
	c := newRollupCache(3 * size)
	for seq := uint64(1); seq <= 3; seq++ {
		c.add(seq, true, one)
	}
	c.get(1, true) // 2 is now the least recently read
	c.add(4, true, one)
	for seq, kept := range map[uint64]bool{1: true, 2: false, 3: true, 4: true} {
		if got := c.get(seq, true) != nil; got != kept {
			t.Errorf("rollup %d: kept %v, want %v", seq, got, kept)
		}
	}
	if c.get(1, false) != nil {
		t.Error("rollup 1 in the BASIC view: got one, but only FULL was added")
	}
	c.add(5, true, bigRollup(40, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE))
	if c.get(5, true) != nil || c.size > c.max {
		t.Errorf("a rollup over the budget: kept %v, size %d of %d", c.get(5, true) != nil, c.size, c.max)
	}
}

// cpuNow is the process's user+system CPU time.
func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGetRollup is GetRollup of random stored 200-member rollups from
// 64 goroutines over one mTLS connection, in the BASIC view (the default)
// and the FULL one, the client decoding the answer; Health/Check on the same
// server is the peer. Every rollup is read once before timing, so the reads
// come from the cache. cpu-µs/op is the process's CPU (client and server)
// per call.
func BenchmarkGetRollup(b *testing.B) {
	ca := testpki.New(b, td)
	cfg := testConfig(b, ca, Member{"FR", closedAddr(b)})
	// A rate no benchmark reaches: the limiter stays in the call path
	// without making this a measure of its refill.
	cfg.Limits.Rates = map[string]grpcsrv.Rate{fedreportv1.CoordinatorService_GetRollup_FullMethodName: {PerSecond: 1e9, Burst: 1 << 30}}
	c := newCoordinator(b, ca, cfg)
	c.store.db.NoSync = true
	ids := make([]string, 300) // ~5.7 MB in the FULL view: within the cache's budget
	for i := range ids {
		ids[i] = storeFinished(b, c.store, bigRollup(200, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE))
	}
	conn := dial(b, ca, serve(b, c), identity.Analyst(td, "bench"))
	client := fedreportv1.NewCoordinatorServiceClient(conn)
	get := func(view fedreportv1.RollupView) func() error {
		return func() error {
			_, err := client.GetRollup(context.Background(), &fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))], View: view})
			return err
		}
	}
	for _, view := range []fedreportv1.RollupView{fedreportv1.RollupView_ROLLUP_VIEW_BASIC, fedreportv1.RollupView_ROLLUP_VIEW_FULL} {
		for _, id := range ids {
			if _, err := client.GetRollup(context.Background(), &fedreportv1.GetRollupRequest{Id: id, View: view}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		call func() error
	}{
		{"health", func() error {
			_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		}},
		{"basic", get(fedreportv1.RollupView_ROLLUP_VIEW_BASIC)},
		{"full", get(fedreportv1.RollupView_ROLLUP_VIEW_FULL)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
			cpu0, start := cpuNow(b), time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
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
		wantView := proto.CloneOf(want)
		wantView.Members = nil
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
		// understood: equal to the stored rollup.
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
	if _, err := s.get(id, true); err == nil || errors.Is(err, ErrRollupNotFound) {
		t.Errorf("get of a broken rollup: got %v, want an error that it is broken", err)
	}
	if _, _, err := s.list(10, 0, 0, true); err == nil {
		t.Error("list over a broken rollup: got no error")
	}
}

// TestListRollupsPagesFitAClientsLimit lists more big rollups than fit in
// the 4 MiB a gRPC client accepts by default: every page must fit, and the
// pages together must hold every rollup once, newest first.
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
	for _, view := range []fedreportv1.RollupView{fedreportv1.RollupView_ROLLUP_VIEW_FULL, fedreportv1.RollupView_ROLLUP_VIEW_BASIC} {
		var ids []string
		pages := 0
		req := &fedreportv1.ListRollupsRequest{PageSize: maxPageSize, View: view}
		for {
			resp, err := client.ListRollups(t.Context(), req)
			if err != nil {
				t.Fatalf("%v, page %d: %v", view, pages+1, err)
			}
			for _, r := range resp.GetRollups() {
				if full := view == fedreportv1.RollupView_ROLLUP_VIEW_FULL; full != (len(r.GetMembers()) == 200) || len(r.GetTotals()) != 5 {
					t.Fatalf("%v, page %d: rollup %s has %d members and %d totals", view, pages+1, r.GetId(), len(r.GetMembers()), len(r.GetTotals()))
				}
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
