// Package coordinator runs fedreport rollups: it holds the member registry,
// asks every member node in parallel under a per-member deadline, sums what
// the members that answered correctly disclosed into totals with honest
// bounds, stores every rollup in its own bbolt file and serves them over
// CoordinatorService (DESIGN.md "Parts", "Totals").
//
// The coordinator reaches nodes only through the generated
// AggregationService client, over mTLS that requires each member's node
// certificate at that member's address.
package coordinator

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/authz"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// DefaultMemberTimeout is the per-member deadline of a rollup when
// Config.MemberTimeout is zero.
const DefaultMemberTimeout = 10 * time.Second

// probeTimeout bounds the DescribeNode probe ListMembers sends each member.
const probeTimeout = 2 * time.Second

// Paging of ListRollups (AIP-158).
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// Config configures a coordinator.
type Config struct {
	// DataPath is the coordinator's bbolt file; it is created if missing.
	DataPath string
	// Members is the registry, in the order rollups list members.
	Members []Member
	// MemberTimeout is the deadline of each member's answer in a rollup;
	// 0 means DefaultMemberTimeout.
	MemberTimeout time.Duration
	// MinMembers is the quorum: a rollup in which fewer members answer
	// correctly is FAILED and shows no totals. 0 means no quorum (but a
	// rollup with no member answering still fails).
	MinMembers int
	// RequireAll makes the quorum every registered member: a rollup that
	// misses any member is FAILED rather than PARTIAL. It excludes MinMembers.
	RequireAll bool
	// ShutdownTimeout bounds how long Serve, once its context is done, lets
	// running rollups finish before it stops them (they are then stored as
	// INTERRUPTED, "coordinator stopping"). 0 means the member timeout plus
	// a second, which lets any rollup that was running finish.
	ShutdownTimeout time.Duration
	// ServerTLS configures the coordinator's listener (mTLS, client
	// certificates required). Serve needs it; the engine does not.
	ServerTLS *tls.Config
	// MemberTLS returns the client TLS configuration used to reach member
	// code; it must refuse any server certificate that is not node/<code>.
	MemberTLS func(code string) (*tls.Config, error)
	// TrustDomain is the alliance's SPIFFE trust domain; only identities in
	// it may call the coordinator.
	TrustDomain string
	// MemberCode, when set, makes the coordinator a member of a larger
	// federation: ServeMember answers AggregationService as this member
	// (2-8 upper-case letters or digits, not one of Members' codes).
	MemberCode string
	// MemberServerTLS configures the ServeMember listener: it must present a
	// node certificate for MemberCode (node/<MemberCode>), which is what the
	// asking coordinator requires, and require client certificates.
	MemberServerTLS *tls.Config
	// Metrics, when set, receives the coordinator's Prometheus metrics
	// (NewMetrics); nil exports none.
	Metrics *Metrics
	// Schedules are rollups RunSchedules runs by itself.
	Schedules []Schedule
	// Operations are the operations ListOperations lists; their members
	// must be registered.
	Operations []Operation
	// Logger receives lifecycle and per-rollup lines; nil discards them.
	Logger *slog.Logger
	// Version is the fedreport software version, for logs.
	Version string
	// Limits are the listeners' limits (internal/grpcsrv); zero fields
	// take the defaults.
	Limits grpcsrv.Limits
	// MemberRate paces the coordinator's Aggregate calls to each member,
	// all rollups together (pace.go); the zero value means
	// DefaultMemberRate, what a node grants by default, and a negative
	// PerSecond turns pacing off. A member that grants less says so with
	// RESOURCE_EXHAUSTED and a RetryInfo, which the coordinator honours.
	MemberRate grpcsrv.Rate
	// MaxRollupBytes bounds one stored rollup; 0 means MaxRollupBytes
	// (tests set less).
	MaxRollupBytes int
	// MaxAnswerBytes bounds the cells of an answer as member MemberCode;
	// 0 means grpcsrv.MaxAnswerBytes (tests set less).
	MaxAnswerBytes int
	// MemberUpdates, when set, receives member lists that replace the
	// members while RunAll runs (ReplaceMembers; fedreport coordinator
	// sends one on SIGHUP).
	MemberUpdates <-chan []Member
}

// Coordinator is a running coordinator: registry, rollup engine and store.
type Coordinator struct {
	log             *slog.Logger
	version         string
	trustDomain     string
	serverTLS       *tls.Config
	memberTimeout   time.Duration
	minMembers      int
	requireAll      bool
	memberCode      string
	memberServerTLS *tls.Config
	schedules       []Schedule
	operations      []Operation
	metrics         *Metrics // nil: none
	limits          grpcsrv.Limits
	maxRollupBytes  int
	maxAnswerBytes  int
	shutdownWait    time.Duration
	store           *store
	memberTLS       func(code string) (*tls.Config, error)
	memberRate      grpcsrv.Rate

	regMu    sync.RWMutex // protects reg
	reg      *registry
	retiring sync.WaitGroup // closing the connections of replaced registries

	// lifetime is cancelled by Close; in-flight rollups stop with it.
	lifetime     context.Context
	stopLifetime context.CancelFunc

	mu       sync.Mutex     // protects closed, and orders inflight.Add before Close's Wait
	closed   bool           // set by Close; no new rollup starts after it
	inflight sync.WaitGroup // rollups running; Close waits for them before closing the store

	closeOnce sync.Once
	closeErr  error
}

// Open checks cfg, opens the store (marking rollups left RUNNING by a
// previous process as INTERRUPTED) and creates one client connection per
// member. It does not contact any member.
func Open(cfg Config) (*Coordinator, error) {
	if cfg.DataPath == "" {
		return nil, errors.New("open coordinator: no data path; give --data FILE.db")
	}
	if err := ValidateMembers(cfg.Members); err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	if cfg.MemberTLS == nil {
		return nil, errors.New("open coordinator: no member TLS configuration")
	}
	if cfg.MemberTimeout < 0 {
		return nil, fmt.Errorf("open coordinator: member timeout %v is negative", cfg.MemberTimeout)
	}
	if cfg.MinMembers < 0 || cfg.MinMembers > len(cfg.Members) {
		return nil, fmt.Errorf("open coordinator: min members %d: want 0 to %d (the registered members)", cfg.MinMembers, len(cfg.Members))
	}
	if cfg.RequireAll && cfg.MinMembers > 0 {
		return nil, fmt.Errorf("open coordinator: min members %d and require all: give one quorum rule, not both", cfg.MinMembers)
	}
	if cfg.MemberCode != "" {
		if err := ValidateMemberCode(cfg.MemberCode); err != nil {
			return nil, fmt.Errorf("open coordinator: own %w", err)
		}
		for _, m := range cfg.Members {
			if m.Code == cfg.MemberCode {
				return nil, fmt.Errorf("open coordinator: own member code %s is also a registered member; a coordinator cannot be its own member", m.Code)
			}
		}
	}
	if err := ValidateSchedules(cfg.Schedules); err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	operations := cloneOperations(cfg.Operations)
	if err := ValidateOperations(operations, cfg.Members); err != nil {
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	if cfg.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("open coordinator: shutdown timeout %v is negative", cfg.ShutdownTimeout)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.MemberTimeout
	if timeout == 0 {
		timeout = DefaultMemberTimeout
	}
	// Members answer a rollup for grpcsrv.MaxRollupRun after its start;
	// the fan-out ends within one member timeout.
	if timeout < 0 || timeout > grpcsrv.MaxRollupRun {
		return nil, fmt.Errorf("open coordinator: member timeout %v: give at most %v (members answer a rollup for %v after it starts)", timeout, grpcsrv.MaxRollupRun, grpcsrv.MaxRollupRun)
	}

	memberRate := cfg.MemberRate
	if memberRate == (grpcsrv.Rate{}) {
		memberRate = DefaultMemberRate
	}
	if memberRate.PerSecond > 0 && memberRate.Burst < 1 {
		return nil, fmt.Errorf("open coordinator: member rate burst %d: want at least 1", memberRate.Burst)
	}

	st, interrupted, err := openStore(cfg.DataPath)
	if err != nil {
		return nil, err
	}
	for _, id := range interrupted {
		log.Info("rollup interrupted by a restart", "id", id)
	}
	reg, err := newRegistry(cfg.Members, cfg.MemberTLS, memberRate)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("open coordinator: %w", err)
	}
	shutdownWait := cfg.ShutdownTimeout
	if shutdownWait == 0 {
		shutdownWait = timeout + time.Second
	}
	lifetime, stop := context.WithCancel(context.Background())
	c := &Coordinator{
		log:             log,
		version:         cfg.Version,
		trustDomain:     cfg.TrustDomain,
		serverTLS:       cfg.ServerTLS,
		memberTimeout:   timeout,
		minMembers:      cfg.MinMembers,
		requireAll:      cfg.RequireAll,
		memberCode:      cfg.MemberCode,
		memberServerTLS: cfg.MemberServerTLS,
		schedules:       slices.Clone(cfg.Schedules),
		operations:      operations,
		metrics:         cfg.Metrics,
		limits:          cfg.Limits,
		maxRollupBytes:  cmp.Or(cfg.MaxRollupBytes, MaxRollupBytes),
		maxAnswerBytes:  cmp.Or(cfg.MaxAnswerBytes, grpcsrv.MaxAnswerBytes),
		shutdownWait:    shutdownWait,
		store:           st,
		memberTLS:       cfg.MemberTLS,
		memberRate:      memberRate,
		reg:             reg,
		lifetime:        lifetime,
		stopLifetime:    stop,
	}
	log.Info("coordinator opened", "data", cfg.DataPath, "members", len(cfg.Members),
		"member_timeout", timeout, "min_members", cfg.MinMembers, "require_all", cfg.RequireAll, "version", cfg.Version)
	return c, nil
}

// Close stops running rollups (they are stored as INTERRUPTED), waits for
// them, closes the member connections and closes the store last. It is safe
// to call more than once.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.stopLifetime()
		c.inflight.Wait()
		c.retiring.Wait()
		c.closeErr = errors.Join(c.registry().close(), c.store.close())
		c.log.Info("coordinator closed")
	})
	return c.closeErr
}

// Members returns the registry, in registry order.
func (c *Coordinator) Members() []Member {
	reg, release := c.acquireRegistry()
	defer release()
	out := make([]Member, len(reg.members))
	for i, m := range reg.members {
		out[i] = m.Member
	}
	return out
}

// GetRollup returns the stored rollup id, whole (the FULL view), as a copy
// the caller may change.
func (c *Coordinator) GetRollup(_ context.Context, id string) (*fedreportv1.Rollup, error) {
	if _, err := getParams(&fedreportv1.GetRollupRequest{Id: id, View: fedreportv1.RollupView_ROLLUP_VIEW_FULL}); err != nil {
		return nil, err
	}
	r, err := c.store.get(id, true)
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(r), nil
}

// getParams validates a GetRollup request and returns whether it asks for
// the FULL view.
func getParams(req *fedreportv1.GetRollupRequest) (full bool, err error) {
	verr := &ValidationError{}
	if req.GetId() == "" {
		verr.add("id", "required: give a rollup id, as in %s", rollupID(42))
	}
	full = fullView(req.GetView(), verr)
	return full, verr.errOrNil()
}

// ListRollups returns a page of stored rollups, newest first. The rollups
// are shared with the coordinator's other readers and must not be modified.
func (c *Coordinator) ListRollups(_ context.Context, req *fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error) {
	size, from, full, err := listParams(req)
	if err != nil {
		return nil, err
	}
	page, next, err := c.store.list(size, from, req.GetState(), full)
	if err != nil {
		return nil, err
	}
	resp := &fedreportv1.ListRollupsResponse{Rollups: page, NextPageToken: pageToken(next)}
	return resp, nil
}

// pageToken is the ListRollups page token that continues at seq, or empty
// when seq is 0 (no more pages).
func pageToken(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(seqKey(seq))
}

// listParams validates a ListRollups request and returns its page size, the
// seq to start from (0: the newest) and whether it asks for the FULL view.
func listParams(req *fedreportv1.ListRollupsRequest) (size int, from uint64, full bool, err error) {
	verr := &ValidationError{}
	size = int(req.GetPageSize())
	switch {
	case size < 0:
		verr.add("page_size", "%d is negative; want 0 (the default, %d) to %d", size, defaultPageSize, maxPageSize)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 8 || binary.BigEndian.Uint64(b) == 0 {
			verr.add("page_token", "not a token this coordinator issued; pass next_page_token unchanged")
		} else {
			from = binary.BigEndian.Uint64(b)
		}
	}
	if _, ok := fedreportv1.RollupState_name[int32(req.GetState())]; !ok {
		verr.add("state", "%d is not a rollup state", req.GetState())
	}
	full = fullView(req.GetView(), verr)
	if err := verr.errOrNil(); err != nil {
		return 0, 0, false, err
	}
	return size, from, full, nil
}

// ListMembers returns a page of the registry with what the coordinator
// knows of each member, after asking each member on the page for its
// description (DescribeNode, under a short deadline, all at once).
func (c *Coordinator) ListMembers(ctx context.Context, req *fedreportv1.ListMembersRequest) (*fedreportv1.ListMembersResponse, error) {
	reg, release := c.acquireRegistry()
	defer release()
	verr := &ValidationError{}
	size := int(req.GetPageSize())
	if size < 0 {
		verr.add("page_size", "%d is negative; want 0 (all members) or more", size)
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 4 || int(binary.BigEndian.Uint32(b)) > len(reg.members) {
			verr.add("page_token", "not a token this coordinator issued; pass next_page_token unchanged")
		} else {
			start = int(binary.BigEndian.Uint32(b))
		}
	}
	if err := verr.errOrNil(); err != nil {
		return nil, err
	}
	end := len(reg.members)
	if size > 0 && start+size < end {
		end = start + size
	}
	page := reg.members[start:end]

	var g errgroup.Group
	g.SetLimit(fanOutLimit)
	for _, m := range page {
		g.Go(func() error {
			c.probe(ctx, m)
			return nil
		})
	}
	_ = g.Wait() // probe records failures on the member instead of returning them.

	resp := &fedreportv1.ListMembersResponse{}
	for _, m := range page {
		resp.Members = append(resp.Members, m.proto())
	}
	if end < len(reg.members) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, uint32(end)))
	}
	return resp, nil
}

// probe asks one member to describe itself and records the outcome.
func (c *Coordinator) probe(ctx context.Context, m *memberConn) {
	c.probeWithin(ctx, m, probeTimeout)
}

// probeWithin is probe with the member's deadline timeout.
func (c *Coordinator) probeWithin(ctx context.Context, m *memberConn, timeout time.Duration) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := m.client.DescribeNode(pctx, &fedreportv1.DescribeNodeRequest{})
	switch {
	case err != nil:
		_, reason := classifyError(ctx, err, timeout)
		m.noteDescribeFailed(reason)
	case d.GetMember() != m.Code:
		m.noteDescribeFailed(clean(fmt.Sprintf("describes itself as member %q, registered as %q", d.GetMember(), m.Code)))
	default:
		m.noteDescribe(time.Now(), d)
	}
}

// rules is the coordinator's part of DESIGN.md's access matrix. Health and
// reflection are open to any authenticated peer (authz does that).
func (c *Coordinator) rules() authz.Rules {
	operator := authz.InDomain(c.trustDomain, authz.Roles(identity.RoleOperator))
	reader := authz.InDomain(c.trustDomain, authz.Roles(identity.RoleOperator, identity.RoleAnalyst))
	return authz.Rules{
		fedreportv1.CoordinatorService_StartRollup_FullMethodName: operator,
		fedreportv1.CoordinatorService_GetRollup_FullMethodName:   reader,
		fedreportv1.CoordinatorService_ListRollups_FullMethodName: reader,
		fedreportv1.CoordinatorService_ListMembers_FullMethodName: reader,
		// Operations are definitions, no counts: who may read rollups may read them.
		fedreportv1.CoordinatorService_ListOperations_FullMethodName: reader,
	}
}

// stopSlack bounds how long a stopping listener waits, after the rollups
// are done, for its other calls (reads, member probes) to finish.
const stopSlack = probeTimeout + time.Second

// Serve serves CoordinatorService, grpc.health.v1 and server reflection on
// lis over mTLS until ctx is done. It then reports NOT_SERVING, refuses new
// rollups, lets the running ones finish within Config.ShutdownTimeout and
// stops the rest, which are stored as INTERRUPTED with the reason
// "coordinator stopping" (see Shutdown); every caller gets its rollup as
// stored. It returns nil after a shutdown asked through ctx.
func (c *Coordinator) Serve(ctx context.Context, lis net.Listener) error {
	if c.serverTLS == nil {
		return errors.New("serve: no server TLS configuration")
	}
	if c.trustDomain == "" {
		return errors.New("serve: no trust domain")
	}
	srv := grpc.NewServer(c.serverOptions(c.serverTLS, c.rules())...)
	fedreportv1.RegisterCoordinatorServiceServer(srv, &server{c: c})
	return c.serveGRPC(ctx, lis, srv, fedreportv1.CoordinatorService_ServiceDesc.ServiceName, "coordinator serving")
}

// serverOptions are a listener's credentials and interceptors: metrics
// first, so that denied calls are counted too, then authorization, then the
// limits (internal/grpcsrv), so that only authorized calls spend a rate.
func (c *Coordinator) serverOptions(tc *tls.Config, rules authz.Rules) []grpc.ServerOption {
	limits := c.limits
	if limits.ErrorDomain == "" {
		limits.ErrorDomain = errorDomain
	}
	if limits.UnaryTimeout == 0 {
		// A rollup's answer must not be cut off while its members may still answer.
		limits.UnaryTimeout = max(grpcsrv.DefaultUnaryTimeout, 2*c.memberTimeout)
	}
	unary := []grpc.UnaryServerInterceptor{authz.UnaryServerInterceptor(rules)}
	stream := []grpc.StreamServerInterceptor{authz.StreamServerInterceptor(rules)}
	if c.metrics != nil {
		unary = append([]grpc.UnaryServerInterceptor{c.metrics.grpc.UnaryServerInterceptor()}, unary...)
		stream = append([]grpc.StreamServerInterceptor{c.metrics.grpc.StreamServerInterceptor()}, stream...)
	}
	tap := authz.Tap{Rules: rules}
	if c.metrics != nil {
		tap.Denied = c.metrics.grpc.Denied
	}
	limits.Authorize = tap.Handle
	if limits.RecvLimits == nil {
		// No coordinator method takes more than grpcsrv.DefaultRecvLimit
		// (there is no ingest here): grpc then refuses a larger request on
		// its length prefix, before reading it.
		limits.RecvLimits = map[string]int{}
	}
	return append([]grpc.ServerOption{
		grpc.Creds(mtls.ServerCredentials(tc)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, grpcsrv.ServerOptions(limits)...)
}

// serveGRPC adds health and reflection to srv, serves it on lis, within
// the connection caps of Config.Limits, until ctx is done and then stops it
// as Serve describes.
func (c *Coordinator) serveGRPC(ctx context.Context, lis net.Listener, srv *grpc.Server, service, msg string) error {
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	grpcsrv.RegisterReflection(srv)

	limits := c.limits
	if c.metrics != nil && limits.ConnectionRefused == nil {
		limits.ConnectionRefused = c.metrics.grpc.ConnectionRefused
	}
	lis = grpcsrv.LimitListener(lis, limits)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	c.log.Info(msg, "addr", lis.Addr().String(), "version", c.version)

	select {
	case err := <-served:
		hs.Shutdown()
		srv.Stop()
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	c.log.Info("listener stopping", "addr", lis.Addr().String())
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	// The handlers of running rollups return once Shutdown has stored them.
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownWait)
	c.Shutdown(sctx)
	cancel()
	slack := time.NewTimer(stopSlack)
	defer slack.Stop()
	select {
	case <-stopped:
	case <-slack.C:
		c.log.Info("graceful stop timed out; closing connections", "addr", lis.Addr().String())
		srv.Stop()
		<-stopped
	}
	<-served
	return nil
}

// Shutdown stops the coordinator taking new rollups (they fail with
// ErrClosed), lets the running ones (from any listener or schedule) finish
// until ctx is done, then stops those still running: they are stored as
// INTERRUPTED with the reason "coordinator stopping". It returns when every
// rollup is stored. Reads keep working until Close.
func (c *Coordinator) Shutdown(ctx context.Context) {
	c.mu.Lock()
	c.closed = true // begin refuses from now on, so inflight only falls.
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	c.log.Info("shutdown deadline passed; interrupting running rollups")
	c.stopLifetime()
	<-done
}

// server adapts the coordinator to the generated CoordinatorService: each
// handler validates, calls the coordinator and maps errors with toStatus.
type server struct {
	fedreportv1.UnimplementedCoordinatorServiceServer
	c *Coordinator
}

// callerID is the verified identity of a StartRollup caller, as stored in
// requested_by.
func callerID(ctx context.Context) (string, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "StartRollup needs a verified client certificate")
	}
	return id.String(), nil
}

// StartRollup implements CoordinatorService.
func (s *server) StartRollup(ctx context.Context, req *fedreportv1.StartRollupRequest) (*fedreportv1.StartRollupResponse, error) {
	by, err := callerID(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.c.StartRollup(ctx, req.GetSpec(), by)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_StartRollup_FullMethodName, err)
	}
	return &fedreportv1.StartRollupResponse{Rollup: r}, nil
}

// GetRollup implements CoordinatorService. A finished rollup is read from
// the store's cache of decoded rollups once it has been read before.
func (s *server) GetRollup(_ context.Context, req *fedreportv1.GetRollupRequest) (*fedreportv1.GetRollupResponse, error) {
	full, err := getParams(req)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_GetRollup_FullMethodName, err)
	}
	r, err := s.c.store.get(req.GetId(), full)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_GetRollup_FullMethodName, err)
	}
	return &fedreportv1.GetRollupResponse{Rollup: r}, nil
}

// ListRollups implements CoordinatorService.
func (s *server) ListRollups(ctx context.Context, req *fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error) {
	resp, err := s.c.ListRollups(ctx, req)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_ListRollups_FullMethodName, err)
	}
	return resp, nil
}

// ListMembers implements CoordinatorService.
func (s *server) ListMembers(ctx context.Context, req *fedreportv1.ListMembersRequest) (*fedreportv1.ListMembersResponse, error) {
	resp, err := s.c.ListMembers(ctx, req)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_ListMembers_FullMethodName, err)
	}
	return resp, nil
}

// ListOperations implements CoordinatorService.
func (s *server) ListOperations(_ context.Context, req *fedreportv1.ListOperationsRequest) (*fedreportv1.ListOperationsResponse, error) {
	resp, err := s.c.ListOperations(req)
	if err != nil {
		return nil, toStatus(s.c.log, fedreportv1.CoordinatorService_ListOperations_FullMethodName, err)
	}
	return resp, nil
}

// registry returns the current member registry.
func (c *Coordinator) registry() *registry {
	c.regMu.RLock()
	defer c.regMu.RUnlock()
	return c.reg
}

// acquireRegistry returns the current member registry for a rollup or a
// call to use to its end; release says it is done with it.
func (c *Coordinator) acquireRegistry() (*registry, func()) {
	c.regMu.RLock()
	defer c.regMu.RUnlock()
	reg := c.reg
	reg.users.Add(1)
	return reg, reg.users.Done
}

// ReplaceMembers makes members the coordinator's members from now on
// (fedreport coordinator on SIGHUP): a member whose code and address are
// unchanged keeps its connection and what the coordinator knows of it; a
// new or re-addressed one is dialled (not contacted); a removed one's
// connection is closed once the rollups that started with it are done.
// Rollups running keep the members they started with. It returns what
// changed, and logs it.
func (c *Coordinator) ReplaceMembers(members []Member) (MemberChanges, error) {
	if err := ValidateMembers(members); err != nil {
		return MemberChanges{}, err
	}
	// The operations stay as configured at start: a member one of them
	// takes part in cannot be removed under it.
	if err := ValidateOperations(cloneOperations(c.operations), members); err != nil {
		return MemberChanges{}, fmt.Errorf("the members would leave an operation without one of its members (%w); change operations: and restart, or keep the member", err)
	}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.retiring.Add(1)
	}
	c.mu.Unlock()
	if closed {
		return MemberChanges{}, ErrClosed
	}
	c.regMu.Lock()
	old := c.reg
	next, dropped, changes, err := old.replaced(members, c.memberTLS, c.memberRate)
	if err == nil {
		c.reg = next
	}
	c.regMu.Unlock()
	if err != nil {
		c.retiring.Done()
		return MemberChanges{}, err
	}
	go func() {
		defer c.retiring.Done()
		old.users.Wait()
		for _, m := range dropped {
			if err := m.conn.Close(); err != nil {
				c.log.Warn("close a replaced member's connection", "member", m.Code, "err", err)
			}
		}
	}()
	c.log.Info("members reloaded", "members", len(members), "added", strings.Join(changes.Added, ","),
		"removed", strings.Join(changes.Removed, ","), "readdressed", strings.Join(changes.Readdressed, ","))
	return changes, nil
}
