package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const td = "isa"

// testNode is a node serving on loopback mTLS and a unix socket.
type testNode struct {
	n      *Node
	ca     *testpki.CA
	addr   string
	socket string
}

// shortTempDir returns a directory whose path fits a unix socket name
// (108 bytes), which t.TempDir's need not.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func startNode(t *testing.T, pol Policy) *testNode {
	t.Helper()
	return startNodeWith(t, Config{Policy: pol})
}

// startNodeWith starts node FR with cfg's policy and limits.
func startNodeWith(t *testing.T, cfg Config) *testNode {
	t.Helper()
	ca := testpki.New(t, td)
	dir := shortTempDir(t)
	cfg.Member = "FR"
	cfg.DataPath = filepath.Join(dir, "fr.db")
	cfg.TrustDomain = td
	cfg.ServerTLS = ca.ServerTLS(t, identity.Node(td, "FR"))
	cfg.Version = "test"
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "fr.sock")
	adminLis, err := ListenAdminSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, lis, adminLis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testNode{n: n, ca: ca, addr: lis.Addr().String(), socket: socket}
}

// startLoadedNode starts node FR with cfg and ingests 3,000 generated
// records over 12 months into it.
func startLoadedNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	tn := startNodeWith(t, cfg)
	if _, err := sendStream(callCtx(t), tn.dialSocket(t), "fr.csv", genRecords(t, "FR", 3000, 12)); err != nil {
		t.Fatal(err)
	}
	return tn
}

// dial connects to the node's mTLS listener as id.
func (tn *testNode) dial(t *testing.T, id identity.ID) *grpc.ClientConn {
	t.Helper()
	creds := credentials.NewTLS(tn.ca.ClientTLS(t, id, identity.Node(td, "FR")))
	conn, err := grpc.NewClient(tn.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// dialSocket connects to the node's local admin socket.
func (tn *testNode) dialSocket(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+tn.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// errorInfo returns the ErrorInfo reason and the BadRequest fields of err.
func errorInfo(err error) (reason string, fields []string) {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				reason = d.GetReason()
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return reason, fields
}

// sendStream ingests batches over conn and returns the response.
func sendStream(ctx context.Context, conn *grpc.ClientConn, source string, batches ...[]*fedreportv1.Record) (*fedreportv1.IngestRecordsResponse, error) {
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range batches {
		if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: b, Source: source}); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream; CloseAndRecv has its status
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

func TestAccessTable(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{})
	aggregate := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewAggregationServiceClient(c).Aggregate(ctx, &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-09-30"})
		return err
	}
	describe := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewAggregationServiceClient(c).DescribeNode(ctx, &fedreportv1.DescribeNodeRequest{})
		return err
	}
	stats := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewNodeAdminServiceClient(c).GetNodeStats(ctx, &fedreportv1.GetNodeStatsRequest{})
		return err
	}
	ingest := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := sendStream(ctx, c, "t.csv", []*fedreportv1.Record{rec("FR-1", arrests, "2020-01-01", 1)})
		return err
	}
	health := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	type call struct {
		name string
		fn   func(context.Context, *grpc.ClientConn) error
	}
	calls := []call{{"Aggregate", aggregate}, {"DescribeNode", describe}, {"GetNodeStats", stats}, {"IngestRecords", ingest}, {"Health", health}}
	needs := map[string]string{"Aggregate": "a coordinator or member-admin", "DescribeNode": "a coordinator or member-admin", "GetNodeStats": "a member-admin", "IngestRecords": "a member-admin"}
	tests := []struct {
		who     string
		id      identity.ID
		allowed map[string]bool
	}{
		{"a coordinator", identity.Coordinator(td, "main"), map[string]bool{"Aggregate": true, "DescribeNode": true, "Health": true}},
		{"FR's member admin", identity.MemberAdmin(td, "FR", "alice"), map[string]bool{"Aggregate": true, "DescribeNode": true, "GetNodeStats": true, "IngestRecords": true, "Health": true}},
		{"IT's member admin", identity.MemberAdmin(td, "IT", "bob"), map[string]bool{"Health": true}},
		{"an analyst", identity.Analyst(td, "ann"), map[string]bool{"Health": true}},
		{"an operator", identity.Operator(td, "op"), map[string]bool{"Health": true}},
		{"another node", identity.Node(td, "IT"), map[string]bool{"Health": true}},
	}
	for _, tt := range tests {
		t.Run(tt.who, func(t *testing.T) {
			conn := tn.dial(t, tt.id)
			for _, c := range calls {
				err := c.fn(callCtx(t), conn)
				if tt.allowed[c.name] {
					if err != nil {
						t.Errorf("%s: got %v, want success", c.name, err)
					}
					continue
				}
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s: got %v, want PermissionDenied", c.name, err)
					continue
				}
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.id.String()) || !strings.Contains(msg, c.name) {
					t.Errorf("%s: denial %q does not name the identity and the method", c.name, msg)
				}
				// The wrong role is told the roles that may call; IT's
				// admin, of the right role, which member (TestAnotherMembersAdminIsToldWhichMember).
				if want := "; it needs " + needs[c.name] + " certificate"; tt.id.Role != identity.RoleMemberAdmin && !strings.HasSuffix(status.Convert(err).Message(), want) {
					t.Errorf("%s: denial %q does not end %q", c.name, status.Convert(err).Message(), want)
				}
			}
		})
	}
	// The trust domain is part of every rule.
	rules := tn.n.rules()
	foreign := identity.Coordinator("elsewhere", "main")
	if rules[fedreportv1.AggregationService_Aggregate_FullMethodName].Allows(foreign) {
		t.Errorf("a coordinator of another trust domain may aggregate")
	}
}

func TestIngestOverTheAdminSocket(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{MinCellCount: 3})
	sock := tn.dialSocket(t)
	ctx := callCtx(t)
	recs := genRecords(t, "FR", 12000, 11)
	resp, err := sendStream(ctx, sock, "fr.csv", recs[:5000], recs[5000:10000], recs[10000:])
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetReceived() != 12000 || resp.GetAdded() != 12000 || resp.GetDataVersion() != 1 {
		t.Errorf("ingest: got %v", resp)
	}
	again, err := sendStream(ctx, sock, "fr.csv", recs)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetUnchanged() != 12000 || again.GetDataVersion() != 1 {
		t.Errorf("second ingest: got %v, want everything unchanged at version 1", again)
	}

	// A coordinator's aggregate over mTLS is logged with its identity.
	agg, err := fedreportv1.NewAggregationServiceClient(tn.dial(t, identity.Coordinator(td, "main"))).Aggregate(ctx,
		&fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", RollupId: "R-1", RollupStartedAt: rollupStarted})
	if err != nil {
		t.Fatal(err)
	}
	if want := sumByMetric(recs); agg.GetCells()[0].GetCount() != want[arrests] || agg.GetDisclosureSeq() != 1 {
		t.Errorf("aggregate: got %v, want arrests %d, seq 1", agg, want[arrests])
	}
	admin := fedreportv1.NewNodeAdminServiceClient(sock)
	list, err := admin.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEntries()) != 1 || list.GetEntries()[0].GetCaller() != "spiffe://isa/coordinator/main" || list.GetEntries()[0].GetRollupId() != "R-1" {
		t.Errorf("disclosures: got %v", list)
	}

	ret, err := admin.RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{recs[0].GetRecordId(), recs[1].GetRecordId()}})
	if err != nil || ret.GetRetracted() != 2 || ret.GetDataVersion() != 2 {
		t.Errorf("retract: got %v, %v", ret, err)
	}
	_, err = admin.RetractRecords(ctx, &fedreportv1.RetractRecordsRequest{RecordIds: []string{recs[2].GetRecordId(), "NOPE"}})
	if reason, fields := errorInfo(err); status.Code(err) != codes.NotFound || reason != ReasonUnknownRecord || len(fields) != 1 {
		t.Errorf("retract unknown: got %v (reason %q, fields %v), want NotFound %s", err, reason, fields, ReasonUnknownRecord)
	}
	st, err := admin.GetNodeStats(ctx, &fedreportv1.GetNodeStatsRequest{})
	if err != nil || st.GetRecords() != 11998 || st.GetDataVersion() != 2 || st.GetDisclosures() != 1 || st.GetMember() != "FR" {
		t.Errorf("stats: got %v, %v", st, err)
	}
	// Aggregation is not served on the admin socket.
	if _, err := fedreportv1.NewAggregationServiceClient(sock).Aggregate(ctx, &fedreportv1.AggregateRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("aggregate on the admin socket: got %v, want Unimplemented", err)
	}
	mustVerify(t, tn.n.Store())
}

func TestIngestWithAnInvalidRecordStoresNothing(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{})
	conn := tn.dial(t, identity.MemberAdmin(td, "FR", "alice"))
	ctx := callCtx(t)
	good := genRecords(t, "FR", 9000, 12)
	bad := []*fedreportv1.Record{rec("FR-X1", arrests, "2020-01-01", 1), {RecordId: "FR-X2", Metric: arrests, Date: "2020-02-30"}}
	_, err := sendStream(ctx, conn, "fr.csv", good, bad)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	if want := `record 9002 of fr.csv: date "2020-02-30" does not exist (2020-02 has 29 days)`; status.Convert(err).Message() != want {
		t.Errorf("message: got %q, want %q", status.Convert(err).Message(), want)
	}
	if reason, fields := errorInfo(err); reason != ReasonInvalidRecord || len(fields) != 1 || fields[0] != "records[9001].date" {
		t.Errorf("details: reason %q fields %v, want %s records[9001].date", reason, fields, ReasonInvalidRecord)
	}
	// A duplicate id is refused the same way.
	_, err = sendStream(ctx, conn, "fr.csv", good[:10], good[5:6])
	if reason, _ := errorInfo(err); status.Code(err) != codes.InvalidArgument || reason != ReasonDuplicateRecord {
		t.Errorf("duplicate: got %v, reason %q", err, reason)
	}
	if rep := mustVerify(t, tn.n.Store()); rep.Records != 0 || rep.DataVersion != 0 {
		t.Errorf("after refused streams: %d records, version %d; want 0, 0", rep.Records, rep.DataVersion)
	}
}

func TestIngestAbandonedByTheClientRollsBack(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{})
	conn := tn.dialSocket(t)
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs := genRecords(t, "FR", 3*ingestBatch, 13)
	for i := 0; i < len(recs); i += 4096 {
		if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: recs[i : i+4096]}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	// The next stream waits for the writer, which the abandoned stream
	// holds until its rollback is done.
	in, err := tn.n.Store().BeginIngest(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	in.Abort()
	if rep := mustVerify(t, tn.n.Store()); rep.Records != 0 {
		t.Errorf("records after the abandoned stream: got %d, want 0", rep.Records)
	}
}

func TestAggregateErrorsOverGRPC(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{EarliestDate: "2019-01-01"})
	client := fedreportv1.NewAggregationServiceClient(tn.dial(t, identity.Coordinator(td, "main")))
	ctx := callCtx(t)
	tests := []struct {
		name   string
		req    *fedreportv1.AggregateRequest
		code   codes.Code
		reason string
		field  string
		msg    string // which rule, and how to change the request
	}{
		{"a cross that is not published", &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31", GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_VICTIM_AGE}},
			codes.FailedPrecondition, ReasonTableNotPublished, "group_by",
			"member FR does not publish a table by offence,victim_age (published: the total (no group_by), offence, channel, victim_age, each by month or not); group by one of those"},
		{"a window release periods do not tile", &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-30"},
			codes.FailedPrecondition, ReasonPeriodNotAligned, "to",
			"member FR answers only from its release: window 2020-01-01..2020-01-30 is not a union of release periods (calendar months); nearest allowed: 2020-01-01..2020-01-31"},
		{"before the earliest date", &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2018-01-01", To: "2020-01-31"},
			codes.FailedPrecondition, ReasonPeriodNotAllowed, "from",
			"member FR's disclosure policy answers only from 2019-01-01 on; start the request (from 2018-01-01) on or after 2019-01-01"},
		{"from after to", &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-02-01", To: "2020-01-31"},
			codes.InvalidArgument, ReasonInvalidArgument, "to", `to "2020-01-31" is before from 2020-02-01 (want from <= to)`},
	}
	for _, tt := range tests {
		_, err := client.Aggregate(ctx, tt.req)
		reason, fields := errorInfo(err)
		if status.Code(err) != tt.code || reason != tt.reason || len(fields) != 1 || fields[0] != tt.field {
			t.Errorf("%s: got %v (reason %q, fields %v), want %v %s on %s", tt.name, err, reason, fields, tt.code, tt.reason, tt.field)
		}
		if got := status.Convert(err).Message(); got != tt.msg {
			t.Errorf("%s: message %q, want %q", tt.name, got, tt.msg)
		}
	}
	desc, err := client.DescribeNode(ctx, &fedreportv1.DescribeNodeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if desc.GetMember() != "FR" || desc.GetKind() != "node" || desc.GetSoftwareVersion() != "test" ||
		desc.GetPolicy().GetMinCellCount() != 5 || desc.GetPolicy().GetEarliestDate() != "2019-01-01" || len(desc.GetPolicy().GetTables()) != 3 {
		t.Errorf("DescribeNode: got %v", desc)
	}
}

// Pages of large disclosure entries end before a client's 4 MiB, and
// following next_page_token still lists every entry once.
func TestListDisclosuresPagesFitAClient(t *testing.T) {
	t.Parallel()
	tn := startLoadedNode(t, Config{Policy: Policy{Tables: [][]fedreportv1.Dimension{everyDimension}}})
	req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-09-30", GroupBy: append([]fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}, everyDimension...)}
	const n = 70 // ~70 KB each: ~4.9 MB in all
	for range n {
		if _, err := tn.n.store.Aggregate(req, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// The deadline is for the calls, not for filling the log above (26 s
	// under -race on a loaded 2-core machine).
	ctx := callCtx(t)
	admin := fedreportv1.NewNodeAdminServiceClient(tn.dialSocket(t))
	var seqs []uint64
	pages := 0
	for token := ""; ; pages++ {
		resp, err := admin.ListDisclosures(ctx, &fedreportv1.ListDisclosuresRequest{PageSize: 100, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		if size := proto.Size(resp); size > 4<<20 {
			t.Errorf("page %d is %d bytes, over a client's 4 MiB", pages+1, size)
		}
		for _, e := range resp.GetEntries() {
			seqs = append(seqs, e.GetSeq())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if pages != 1 || len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n || !slices.IsSorted(seqs) {
		t.Errorf("got %d entries (%v...) over %d pages, want 1..%d over 2 pages", len(seqs), seqs[:min(3, len(seqs))], pages+1, n)
	}
}

func TestToStatusHidesInternalErrors(t *testing.T) {
	t.Parallel()
	st, internal := toStatus(&CorruptError{Problem: "counter x would go from 1 to -1 in /secret/path"})
	if !internal || status.Code(st) != codes.Internal || strings.Contains(st.Error(), "secret") {
		t.Errorf("got %v (internal %v), want a generic Internal", st, internal)
	}
	if st, _ := toStatus(context.Canceled); status.Code(st) != codes.Canceled {
		t.Errorf("canceled: got %v", st)
	}
	if st, _ := toStatus(ErrClosed); status.Code(st) != codes.Unavailable {
		t.Errorf("closed: got %v", st)
	}
}

func TestRunServesTheAdminSocket(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	socket := filepath.Join(dir, "fr.sock")
	// A stale socket left by a crash.
	stale, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Member: "FR", DataPath: filepath.Join(dir, "fr.db"), TrustDomain: td}, "", socket)
	}()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Wait for the node through its health service.
	resp, err := healthpb.NewHealthClient(conn).Check(callCtx(t), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %v, %v", resp, err)
	}
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: got %v, %v, want 0600", fi.Mode().Perm(), err)
	}
	if _, err := ListenAdminSocket(socket); err == nil || !strings.Contains(err.Error(), "another process answers there") {
		t.Errorf("second listener on a live socket: got %v", err)
	}
	if _, err := sendStream(callCtx(t), conn, "fr.csv", []*fedreportv1.Record{rec("FR-1", arrests, "2020-01-01", 1)}); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after shutdown: got %v, want it removed", err)
	}
	rep, err := Verify(filepath.Join(dir, "fr.db"))
	if err != nil || !rep.OK() || rep.Records != 1 {
		t.Errorf("verify after Run: %+v, %v", rep, err)
	}
	// A file that is not a socket is not removed.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenAdminSocket(plain); err == nil {
		t.Errorf("listen over a plain file: got nil error")
	}
	// A path bind(2) cannot take is named as too long, not "invalid argument".
	long := filepath.Join(dir, strings.Repeat("s", 120)+".sock")
	if _, err := ListenAdminSocket(long); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the path is too long (%d bytes, the limit is 107); use a shorter one", len(long))) {
		t.Errorf("listen on a %d-byte path: got %v, want it named as too long", len(long), err)
	}
}

// rawCodec is a client codec that keeps a response's bytes as they came.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// everyDimension is the cross of every table dimension.
var everyDimension = []fedreportv1.Dimension{
	fedreportv1.Dimension_DIMENSION_OFFENCE, fedreportv1.Dimension_DIMENSION_CHANNEL, fedreportv1.Dimension_DIMENSION_VICTIM_AGE,
}

// syncBuffer is a bytes.Buffer a logger and a test share.
// Every write is signalled on wrote, when nobody has yet taken the last
// signal.
type syncBuffer struct {
	mu    sync.Mutex // protects b
	b     bytes.Buffer
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestALongIngestStreamIsNotLoggedAsASlowCall(t *testing.T) {
	t.Parallel()
	logged := &syncBuffer{wrote: make(chan struct{}, 1)}
	tn := startNodeWith(t, Config{Logger: slog.New(slog.NewTextHandler(logged, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	stream, err := fedreportv1.NewNodeAdminServiceClient(tn.dialSocket(t)).IngestRecords(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	recs := genRecords(t, "FR", 20, 1)
	if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: recs[:10], Source: "fr.csv"}); err != nil {
		t.Fatal(err)
	}
	// A stream lasts as long as its sender takes: here longer than a
	// unary call may take before it is logged as slow.
	time.Sleep(slowCall + 100*time.Millisecond)
	if err := stream.Send(&fedreportv1.IngestRecordsRequest{Records: recs[10:], Source: "fr.csv"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	// The call is logged once the handler has returned, which may be
	// after the client has its answer.
	deadline := time.After(10 * time.Second)
	for !strings.Contains(logged.String(), "msg=call method="+fedreportv1.NodeAdminService_IngestRecords_FullMethodName) {
		select {
		case <-logged.wrote:
		case <-deadline:
			t.Fatalf("the stream was not logged within 10s:\n%s", logged.String())
		}
	}
	if out := logged.String(); strings.Contains(out, "level=WARN") {
		t.Errorf("a successful ingest stream was logged as a warning:\n%s", out)
	}
}

// TestReflectionServesTheProtoComments asks the node's server reflection
// (as grpcurl describe does) for the file of NodeAdminService: it comes
// with its comments.
func TestReflectionServesTheProtoComments(t *testing.T) {
	t.Parallel()
	tn := startNodeWith(t, Config{})
	stream, err := reflectionv1.NewServerReflectionClient(tn.dialSocket(t)).ServerReflectionInfo(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: fedreportv1.NodeAdminService_ServiceDesc.ServiceName}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var comments []string
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatal(err)
		}
		for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
			comments = append(comments, loc.GetLeadingComments())
		}
	}
	if !slices.ContainsFunc(comments, func(c string) bool {
		return strings.Contains(c, "NodeAdminService is the member ministry's own administration")
	}) {
		t.Errorf("reflection served %d comments, none of them NodeAdminService's", len(comments))
	}
}

// rollupStarted is when the tests' rollups started: a coordinator asks
// a member only within a running rollup, named with its start.
var rollupStarted = timestamppb.Now()
