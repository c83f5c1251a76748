package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// LocalAdmin is the caller recorded for requests on the node's local admin
// socket, which has no TLS: the socket file's permissions are its access control.
const LocalAdmin = "local-admin"

// Config configures a node.
type Config struct {
	// Member is the member code (FR, IT, ...).
	Member string
	// DataPath is the bbolt data file.
	DataPath string
	// Policy is the member's disclosure policy.
	Policy Policy
	// TrustDomain is the alliance's SPIFFE trust domain ("isa"); callers
	// from another trust domain are refused.
	TrustDomain string
	// ServerTLS is the mTLS configuration of the network listener
	// (internal/mtls.ServerConfig).
	ServerTLS *tls.Config
	// Logger receives lifecycle logs at Info and requests at Debug; nil discards.
	Logger *slog.Logger
	// Version is the software version DescribeNode reports.
	Version string
	// Limits are the listeners' limits (internal/grpcsrv); zero fields
	// take the defaults.
	Limits grpcsrv.Limits
	// Metrics, when set, counts and times every call on both listeners
	// and times the disclosure log's appends (NewMetrics); nil exports
	// none. No metric carries a count.
	Metrics *Metrics
	// MaxAnswerBytes bounds an Aggregate answer's encoded cells; 0 means
	// MaxAnswerBytes (tests set less).
	MaxAnswerBytes int
	// OnServing, when set, is called by Run once the node is open and its
	// listeners are bound (the metrics listener's /readyz).
	OnServing func()
}

// Node is one member's node: its store and the gRPC services over it.
type Node struct {
	cfg   Config
	store *Store
	log   *slog.Logger
}

// Open opens the node's store. The caller must Close the node.
func Open(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TrustDomain == "" {
		return nil, errors.New("node: no trust domain configured")
	}
	// A damaged file is refused before anything is served from it.
	if err := CheckFile(cfg.DataPath); err != nil {
		return nil, err
	}
	st, err := OpenStore(cfg.DataPath, StoreOptions{Member: cfg.Member, Policy: cfg.Policy, Logger: cfg.Logger, MaxAnswerBytes: cfg.MaxAnswerBytes, Metrics: cfg.Metrics})
	if err != nil {
		return nil, err
	}
	if cfg.Metrics != nil {
		if stats, err := st.Stats(); err == nil {
			cfg.Metrics.wrote(stats.DataVersion, stats.LastWrite)
		}
	}
	return &Node{cfg: cfg, store: st, log: cfg.Logger}, nil
}

// Store returns the node's store.
func (n *Node) Store() *Store { return n.store }

// Member returns the node's member code.
func (n *Node) Member() string { return n.cfg.Member }

// Verify checks the open store (see Verify).
func (n *Node) Verify() (*Report, error) { return n.store.Verify() }

// Close closes the store. Call it after Serve has returned.
func (n *Node) Close() error { return n.store.Close() }

// rules is the node's access table (DESIGN.md "Identities and access"):
// coordinators and this member's admins may aggregate and describe; only
// this member's admins may administer over the network. Every rule also
// requires the alliance's trust domain.
func (n *Node) rules() authz.Rules {
	query := authz.InDomain(n.cfg.TrustDomain, authz.Any(authz.Roles(identity.RoleCoordinator), authz.MemberAdminOf(n.cfg.Member)))
	admin := authz.InDomain(n.cfg.TrustDomain, authz.MemberAdminOf(n.cfg.Member))
	return authz.Rules{
		fedreportv1.AggregationService_Aggregate_FullMethodName:     query,
		fedreportv1.AggregationService_DescribeNode_FullMethodName:  query,
		fedreportv1.NodeAdminService_IngestRecords_FullMethodName:   admin,
		fedreportv1.NodeAdminService_RetractRecords_FullMethodName:  admin,
		fedreportv1.NodeAdminService_ListDisclosures_FullMethodName: admin,
		fedreportv1.NodeAdminService_GetNodeStats_FullMethodName:    admin,
		fedreportv1.NodeAdminService_BackupNode_FullMethodName:      admin,
	}
}

// explainRefusal words the refusal of a member-admin of another member
// than this node's, whom the rules refuse for every method they name: it
// says which member's certificate the call needs, where authz's refusal
// alone reads as the wrong role.
func (n *Node) explainRefusal(id identity.ID, method string) error {
	if id.Role != identity.RoleMemberAdmin || id.TrustDomain != n.cfg.TrustDomain || id.Member == n.cfg.Member {
		return nil
	}
	return withDetails(codes.PermissionDenied,
		fmt.Sprintf("%s may not call %s: this is the node of member %s; it needs a member-admin certificate of %s", id, method, n.cfg.Member, n.cfg.Member),
		ReasonOtherMember)
}

// limits are the configured limits with this node's error domain, and
// connections refused counted in its metrics.
func (n *Node) limits() grpcsrv.Limits {
	l := n.cfg.Limits
	if l.ErrorDomain == "" {
		l.ErrorDomain = ErrorDomain
	}
	if m := n.cfg.Metrics; m != nil && l.ConnectionRefused == nil {
		l.ConnectionRefused = m.grpc.ConnectionRefused
	}
	return l
}

// shutdownGrace is how long Serve lets running calls finish after its
// context ends before it cuts them off.
const shutdownGrace = 5 * time.Second

// Serve serves until ctx is done, then shuts down gracefully: health turns
// NOT_SERVING, running calls get shutdownGrace to finish, then the rest are
// cut off. lis is the mTLS listener (AggregationService, NodeAdminService,
// health, reflection; access per the table above); adminLis, which may be
// nil, is the local admin socket (NodeAdminService, health, reflection;
// no TLS). Serve closes the listeners; it returns the first serving error,
// or nil after a shutdown.
func (n *Node) Serve(ctx context.Context, lis, adminLis net.Listener) error {
	if lis == nil && adminLis == nil {
		return errors.New("node: serve: no listener")
	}
	hs := health.NewServer()
	for _, name := range []string{"", fedreportv1.AggregationService_ServiceDesc.ServiceName, fedreportv1.NodeAdminService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	common := []grpc.ServerOption{
		// Handlers must be done before Close closes the store.
		grpc.WaitForHandlers(true),
	}
	if m := n.cfg.Metrics; m != nil {
		// First in the chain, so refused calls are counted too.
		common = append(common, grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
			grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()))
	}
	type served struct {
		srv *grpc.Server
		lis net.Listener
	}
	var servers []served
	if lis != nil {
		if n.cfg.ServerTLS == nil {
			return errors.New("node: serve: the network listener needs ServerTLS")
		}
		rules := n.rules()
		tap := authz.Tap{Rules: rules, Explain: n.explainRefusal}
		if m := n.cfg.Metrics; m != nil {
			tap.Denied = m.grpc.Denied
		}
		limits := n.limits()
		limits.Authorize = tap.Handle
		// The limits come after authz: only authorized calls spend a rate.
		srv := grpc.NewServer(append(append(common,
			grpc.Creds(mtls.ServerCredentials(n.cfg.ServerTLS)),
			grpc.ChainUnaryInterceptor(n.logUnary, authz.UnaryServerInterceptor(rules, n.explainRefusal)),
			grpc.ChainStreamInterceptor(n.logStream, authz.StreamServerInterceptor(rules, n.explainRefusal)),
		), grpcsrv.ServerOptions(limits)...)...)
		fedreportv1.RegisterAggregationServiceServer(srv, &aggregationServer{n: n})
		fedreportv1.RegisterNodeAdminServiceServer(srv, &adminServer{n: n})
		healthpb.RegisterHealthServer(srv, hs)
		grpcsrv.RegisterReflection(srv)
		// The caps are the network listener's: the admin socket is the
		// node's own user's.
		servers = append(servers, served{srv, grpcsrv.LimitListener(lis, limits)})
	}
	if adminLis != nil {
		srv := grpc.NewServer(append(append(common,
			grpc.ChainUnaryInterceptor(n.logUnary),
			grpc.ChainStreamInterceptor(n.logStream),
		), grpcsrv.LocalOptions(n.limits())...)...)
		fedreportv1.RegisterNodeAdminServiceServer(srv, &adminServer{n: n, local: true})
		healthpb.RegisterHealthServer(srv, hs)
		grpcsrv.RegisterReflection(srv)
		servers = append(servers, served{srv, adminLis})
	}

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("serve %s: %w", s.lis.Addr(), err)
				return
			}
			errc <- nil
		})
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	n.log.Info("node shutting down", "member", n.cfg.Member)
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() {
		var g sync.WaitGroup
		for _, s := range servers {
			g.Go(s.srv.GracefulStop)
		}
		g.Wait()
		close(stopped)
	}()
	timer := time.NewTimer(shutdownGrace)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		n.log.Warn("calls still running after the grace period; cutting them off", "grace", shutdownGrace)
		for _, s := range servers {
			s.srv.Stop()
		}
		<-stopped
	}
	wg.Wait()
	return serveErr
}

// slowCall is when a call is worth a log line above Debug.
const slowCall = time.Second

// logCall logs a call at Debug, or at Warn when a unary call was slow. A
// stream (an ingest) lasts as long as its sender takes to send it, so its
// length says nothing about the node; the ingest logs its own end.
func (n *Node) logCall(ctx context.Context, method string, start time.Time, err error, stream bool) {
	d := time.Since(start)
	level := slog.LevelDebug
	if d >= slowCall && !stream {
		level = slog.LevelWarn
	}
	if !n.log.Enabled(ctx, level) {
		return
	}
	n.log.Log(ctx, level, "call", "method", method, "code", status.Code(err).String(), "duration", d)
}

func (n *Node) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	n.logCall(ctx, info.FullMethod, start, err, false)
	return resp, err
}

func (n *Node) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	n.logCall(ss.Context(), info.FullMethod, start, err, true)
	return err
}

// status maps a store error for a peer, logging what it hides.
func (n *Node) status(ctx context.Context, method string, err error) error {
	st, internal := toStatus(err)
	if internal {
		n.log.ErrorContext(ctx, "internal error", "method", method, "err", err)
	}
	return st
}

// aggregationServer serves AggregationService on the mTLS listener.
type aggregationServer struct {
	fedreportv1.UnimplementedAggregationServiceServer
	n *Node
}

// Aggregate answers from the node's release for the verified caller.
func (s *aggregationServer) Aggregate(ctx context.Context, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "Aggregate needs a verified client certificate")
	}
	resp, err := s.n.store.Aggregate(req, id.String())
	if err != nil {
		return nil, s.n.status(ctx, "Aggregate", err)
	}
	return resp, nil
}

func (s *aggregationServer) DescribeNode(ctx context.Context, _ *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	v, err := s.n.store.DataVersion()
	if err != nil {
		return nil, s.n.status(ctx, "DescribeNode", err)
	}
	return &fedreportv1.DescribeNodeResponse{
		Member:          s.n.cfg.Member,
		Policy:          s.n.store.Policy().Proto(),
		DataVersion:     v,
		SoftwareVersion: s.n.cfg.Version,
		Kind:            "node",
	}, nil
}

// adminServer serves NodeAdminService, on the mTLS listener (member admins
// only, by the access table) or on the local admin socket (local).
type adminServer struct {
	fedreportv1.UnimplementedNodeAdminServiceServer
	n     *Node
	local bool
}

// caller names who called, for the log.
func (s *adminServer) caller(ctx context.Context) string {
	if s.local {
		return LocalAdmin
	}
	if id, ok := identity.FromContext(ctx); ok {
		return id.String()
	}
	return "unknown"
}

func (s *adminServer) IngestRecords(stream grpc.ClientStreamingServer[fedreportv1.IngestRecordsRequest, fedreportv1.IngestRecordsResponse]) (err error) {
	ctx := stream.Context()
	committed := false
	defer func() {
		if err != nil && !committed {
			s.n.cfg.Metrics.ingestEnded(IngestFailed)
		}
	}()
	notice := &lockNotice{ss: stream}
	in, err := s.n.store.BeginIngest(withWriter(ctx, s.caller(ctx), notice.waiting))
	if err != nil {
		return s.n.status(ctx, "IngestRecords", err)
	}
	notice.acquired(time.Now())
	// On any return but a successful commit (an invalid record, the client
	// going away, a shutdown) the whole stream is rolled back.
	defer in.Abort()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.n.log.Info("ingest stream ended without commit; rolled back", "caller", s.caller(ctx), "received", in.Received(), "err", err)
			return err
		}
		if err := in.Add(req.GetSource(), req.GetRecords()); err != nil {
			return s.n.status(ctx, "IngestRecords", err)
		}
	}
	sum, err := in.Commit()
	if err != nil {
		return s.n.status(ctx, "IngestRecords", err)
	}
	committed = true
	s.n.cfg.Metrics.ingestEnded(IngestCommitted)
	if sum.Added+sum.Changed > 0 {
		s.n.cfg.Metrics.wrote(sum.DataVersion, time.Now())
	}
	s.n.log.Info("ingest committed", "caller", s.caller(ctx), "received", sum.Received, "added", sum.Added,
		"changed", sum.Changed, "unchanged", sum.Unchanged, "data_version", sum.DataVersion)
	return stream.SendAndClose(sum.Proto())
}

func (s *adminServer) RetractRecords(ctx context.Context, req *fedreportv1.RetractRecordsRequest) (*fedreportv1.RetractRecordsResponse, error) {
	retract := s.n.store.Retract
	if req.GetIgnoreMissing() {
		retract = s.n.store.RetractStored
	}
	sum, err := retract(withWriter(ctx, s.caller(ctx), nil), req.GetRecordIds())
	if err != nil {
		return nil, s.n.status(ctx, "RetractRecords", err)
	}
	s.n.log.Info("records retracted", "caller", s.caller(ctx), "retracted", sum.Retracted, "data_version", sum.DataVersion)
	if sum.Retracted > 0 {
		s.n.cfg.Metrics.wrote(sum.DataVersion, time.Now())
	}
	return &fedreportv1.RetractRecordsResponse{Retracted: sum.Retracted, DataVersion: sum.DataVersion, Missing: sum.Missing}, nil
}

func (s *adminServer) ListDisclosures(ctx context.Context, req *fedreportv1.ListDisclosuresRequest) (*fedreportv1.ListDisclosuresResponse, error) {
	entries, next, err := s.n.store.ListDisclosures(req.GetPageSize(), req.GetPageToken(), req.GetSince())
	if err != nil {
		return nil, s.n.status(ctx, "ListDisclosures", err)
	}
	return &fedreportv1.ListDisclosuresResponse{Entries: entries, NextPageToken: next}, nil
}

func (s *adminServer) GetNodeStats(ctx context.Context, _ *fedreportv1.GetNodeStatsRequest) (*fedreportv1.GetNodeStatsResponse, error) {
	st, err := s.n.store.Stats()
	if err != nil {
		return nil, s.n.status(ctx, "GetNodeStats", err)
	}
	resp := st.Proto()
	resp.Policy = s.n.store.Policy().Proto()
	resp.SoftwareVersion = s.n.cfg.Version
	return resp, nil
}

// backupChunk is how many bytes of the copy one BackupNode message carries.
const backupChunk = 256 << 10

// BackupNode streams a consistent copy of the data file.
func (s *adminServer) BackupNode(_ *fedreportv1.BackupNodeRequest, stream grpc.ServerStreamingServer[fedreportv1.BackupNodeResponse]) error {
	ctx := stream.Context()
	w := &backupWriter{stream: stream, buf: make([]byte, 0, backupChunk)}
	start := time.Now()
	err := s.n.store.Backup(ctx, func(size int64, dataVersion uint64) io.Writer {
		w.first = &fedreportv1.BackupNodeResponse{SizeBytes: size, DataVersion: dataVersion, Member: s.n.cfg.Member}
		return w
	})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return err // the stream's own error: the client went away
		}
		return s.n.status(ctx, "BackupNode", err)
	}
	s.n.log.Info("backup sent", "caller", s.caller(ctx), "bytes", w.sent, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// backupWriter sends what it is written in chunks of backupChunk bytes, the
// first with the copy's size and data version.
type backupWriter struct {
	stream grpc.ServerStreamingServer[fedreportv1.BackupNodeResponse]
	first  *fedreportv1.BackupNodeResponse // sent with the first chunk
	buf    []byte
	sent   int64
}

func (w *backupWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *backupWriter) flush() error {
	if len(w.buf) == 0 && w.first == nil {
		return nil
	}
	msg := w.first
	if msg == nil {
		msg = &fedreportv1.BackupNodeResponse{}
	}
	w.first = nil
	msg.Chunk = w.buf
	if err := w.stream.Send(msg); err != nil {
		return err
	}
	w.sent += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}
