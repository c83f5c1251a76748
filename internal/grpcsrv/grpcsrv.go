// Package grpcsrv holds the limits every fedreport gRPC listener runs with,
// so that a peer with a valid certificate still cannot exhaust a server:
// message and header sizes, concurrent streams, handshake and keepalive
// rules, a maximum connection age (which also makes certificate revocation
// and rotation reach long-lived connections), caps on the connections of a
// listener and of each source address (LimitListener), a deadline on unary
// calls that come without one, a per-identity rate limit on the expensive
// calls and bounds on the lists in a query.
//
// The options go after a server's authorization interceptors, so that only
// authorized calls use up an identity's rate:
//
//	grpc.NewServer(append(append(opts, authzOptions...), grpcsrv.ServerOptions(limits)...)...)
package grpcsrv

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/isa-alliance/fedreport/internal/echo"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Defaults of Limits' zero fields.
const (
	// DefaultMaxRecvMsgSize bounds one request message of IngestRecords, the
	// only method that needs megabytes. An ingest batch of the CLI (2,000
	// records of at most ~200 bytes) is well under it.
	DefaultMaxRecvMsgSize = 4 << 20
	// DefaultRecvLimit bounds one request message of a method that
	// DefaultRecvLimits does not name: a query, a lookup, a page, a health
	// check take a few hundred bytes.
	DefaultRecvLimit = 64 << 10
	// DefaultMaxHeaderListSize bounds a request's metadata.
	DefaultMaxHeaderListSize = 64 << 10
	// DefaultMaxConcurrentStreams bounds the calls in flight on one connection.
	DefaultMaxConcurrentStreams = 100
	// DefaultConnectionTimeout bounds the TLS handshake of a new connection.
	DefaultConnectionTimeout = 10 * time.Second
	// DefaultMaxConnectionAge is when a server asks a client to reconnect
	// (GOAWAY, ±10% jitter): the new connection is a new handshake, against
	// the current certificate, CA bundle and revocation list.
	DefaultMaxConnectionAge = 10 * time.Minute
	// DefaultMaxConnectionAgeGrace is how long calls running at that point
	// may go on before the connection is closed. A revoked certificate is
	// cut off at most MaxConnectionAge·1.1 + MaxConnectionAgeGrace after the
	// revocation list reaches the server.
	DefaultMaxConnectionAgeGrace = 5 * time.Minute
	// DefaultUnaryTimeout is the deadline of a unary call that came without one.
	DefaultUnaryTimeout = 2 * time.Minute
	// DefaultKeepaliveMinTime is the shortest ping interval a client may use;
	// one that pings more often is disconnected (too_many_pings).
	DefaultKeepaliveMinTime = 10 * time.Second
	// streamWindow and connWindow are the static flow-control windows a
	// server gives each call and each connection: a request of
	// DefaultMaxRecvMsgSize arrives without waiting for a window update,
	// and a connection holds at most connWindow of unread requests (grpc's
	// dynamic windows may grow to 16 MiB each). Static windows also turn off
	// grpc's bandwidth estimation, which follows nearly every request with a
	// PING and its ack: two more writes and reads at each end of every call.
	streamWindow = DefaultMaxRecvMsgSize
	connWindow   = 2 * DefaultMaxRecvMsgSize
	// keepaliveTime and keepaliveTimeout are how a server finds a peer gone.
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
)

// DefaultRates are the per-identity rate limits when Limits.Rates is nil: a
// node answers a coordinator's rollups and a coordinator its operators'
// rollups; a burst covers a demo or a scripted batch, the sustained rate
// keeps one identity from crowding out the others (or from mining a node's
// disclosure log with a stream of near-identical queries). The
// coordinator's reads are cheap but not free (GetRollup may decode a large
// rollup, ListMembers asks every member to describe itself): their
// generous limits leave any dashboard or script room and stop one identity
// from keeping the coordinator busy for everyone.
var DefaultRates = map[string]Rate{
	fedreportv1.AggregationService_Aggregate_FullMethodName:   {PerSecond: 5, Burst: 60},
	fedreportv1.CoordinatorService_StartRollup_FullMethodName: {PerSecond: 0.5, Burst: 10},
	fedreportv1.CoordinatorService_GetRollup_FullMethodName:   {PerSecond: 20, Burst: 200},
	fedreportv1.CoordinatorService_ListRollups_FullMethodName: {PerSecond: 5, Burst: 50},
	fedreportv1.CoordinatorService_ListMembers_FullMethodName: {PerSecond: 1, Burst: 20},
}

// DefaultRecvLimits are the per-method request limits when Limits.RecvLimits
// is nil: an ingest batch, and a retraction that may name thousands of ids.
var DefaultRecvLimits = map[string]int{
	fedreportv1.NodeAdminService_IngestRecords_FullMethodName:  DefaultMaxRecvMsgSize,
	fedreportv1.NodeAdminService_RetractRecords_FullMethodName: 1 << 20,
}

// Rate is a token bucket: Burst calls at once, refilled at PerSecond.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Limits configures a server. Zero fields take the defaults above; a
// negative duration turns that limit off.
type Limits struct {
	// MaxRecvMsgSize bounds every request message, checked by grpc on its
	// length prefix before it reads the message. 0 means the largest of the
	// per-method limits below.
	MaxRecvMsgSize int
	// RecvLimits maps full method names to the largest request message
	// each takes (at most MaxRecvMsgSize); nil means DefaultRecvLimits.
	RecvLimits map[string]int
	// RecvLimit is the limit of every method RecvLimits does not name; 0
	// means DefaultRecvLimit.
	RecvLimit int

	MaxConcurrentStreams  uint32
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	UnaryTimeout          time.Duration
	// IngestIdleTimeout ends an ingest stream whose client sends nothing
	// for that long while the server waits for its next message; the
	// handler sees an error and rolls the stream back. 0 means
	// DefaultIngestIdleTimeout; a negative value turns it off.
	IngestIdleTimeout time.Duration
	// MaxConnections caps the open connections of a network listener
	// wrapped with LimitListener, and MaxConnectionsPerSource those from
	// one source IP address; a connection past either is closed as it is
	// accepted. 0 means DefaultMaxConnections and
	// DefaultMaxConnectionsPerSource; a negative value turns the cap off.
	MaxConnections          int
	MaxConnectionsPerSource int
	// ConnectionRefused, if set, is called with CapListener or CapSource
	// for each connection LimitListener closes (a metric).
	ConnectionRefused func(limit string)
	// Authorize, if set, runs first in the listener's tap handle, when a
	// call's headers arrive and before its request is read (authz.Tap).
	Authorize tap.ServerInHandle
	// Rates maps full method names to a per-identity rate. nil means
	// DefaultRates; an empty map limits no method.
	Rates map[string]Rate
	// ErrorDomain is the google.rpc.ErrorInfo domain of the errors the limits
	// return, the server's own; empty means "fedreport".
	ErrorDomain string
	// Now is the clock of the rate limits; nil means time.Now.
	Now func() time.Time
}

// ErrorInfo reasons of the limits; clients branch on them, not on text.
const (
	// ReasonRateLimited: the identity called the method too often; the
	// status carries a google.rpc.RetryInfo with the delay.
	ReasonRateLimited = "RATE_LIMITED"
	// ReasonInvalidArgument: a list in the request is longer than any valid
	// request's (the same reason the servers use for other invalid requests).
	ReasonInvalidArgument = "INVALID_ARGUMENT"
)

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if l.RecvLimits == nil {
		l.RecvLimits = DefaultRecvLimits
	}
	if l.RecvLimit <= 0 {
		l.RecvLimit = DefaultRecvLimit
	}
	if l.MaxRecvMsgSize <= 0 {
		l.MaxRecvMsgSize = l.RecvLimit
		for _, n := range l.RecvLimits {
			l.MaxRecvMsgSize = max(l.MaxRecvMsgSize, n)
		}
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConnectionsPerSource == 0 {
		l.MaxConnectionsPerSource = DefaultMaxConnectionsPerSource
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	def(&l.MaxConnectionAge, DefaultMaxConnectionAge)
	def(&l.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	def(&l.UnaryTimeout, DefaultUnaryTimeout)
	def(&l.IngestIdleTimeout, DefaultIngestIdleTimeout)
	if l.Rates == nil {
		l.Rates = DefaultRates
	}
	if l.ErrorDomain == "" {
		l.ErrorDomain = "fedreport"
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return l
}

// ServerOptions returns the options of a network (mTLS) listener: size and
// stream limits, handshake timeout, keepalive enforcement, maximum
// connection age, and a unary interceptor chain (deadline, request bounds,
// per-identity rate) to add after authorization.
func ServerOptions(l Limits) []grpc.ServerOption {
	l = l.withDefaults()
	params := keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}
	if l.MaxConnectionAge > 0 {
		params.MaxConnectionAge = l.MaxConnectionAge
		if l.MaxConnectionAgeGrace > 0 {
			params.MaxConnectionAgeGrace = l.MaxConnectionAgeGrace
		}
	}
	return append(common(l),
		grpc.ConnectionTimeout(DefaultConnectionTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: DefaultKeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(params),
	)
}

// LocalOptions returns the options of a local (unix socket) listener: the
// size and stream limits and the interceptors of ServerOptions, without a
// connection age, which would cut a long ingest short and has no
// certificate to re-check.
func LocalOptions(l Limits) []grpc.ServerOption {
	return common(l.withDefaults())
}

func common(l Limits) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{l.recvLimitUnary, deadline(l.UnaryTimeout), bounds(l.ErrorDomain)}
	if len(l.Rates) > 0 {
		unary = append(unary, newRateLimiter(l.Rates, l.Now, l.ErrorDomain).unary)
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxHeaderListSize(DefaultMaxHeaderListSize),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		// Handlers run on kept goroutines (a new one only when all are
		// busy), whose stacks have grown to what a call needs, instead of a
		// new goroutine per call that grows its stack every time. (The
		// option is marked experimental; grpc-go plans to make workers the
		// default.)
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(l.recvLimitStream, l.idleStream),
		grpc.InTapHandle(l.tapHandle),
	}
}

// deadline gives a unary call without a deadline one of d, so that no
// handler (and nothing it calls downstream) runs unbounded.
func deadline(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, ok := ctx.Deadline(); !ok && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// Bounds on the lists of a query: a valid query names each metric and each
// dimension at most once, so a longer list is refused before the handler
// builds a violation for each element.
var (
	MaxMetrics    = len(fedreportv1.Metric_name) - 1    // without METRIC_UNSPECIFIED
	MaxDimensions = len(fedreportv1.Dimension_name) - 1 // without DIMENSION_UNSPECIFIED
)

// query is an AggregateRequest or a RollupSpec.
type query interface {
	GetMetrics() []fedreportv1.Metric
	GetGroupBy() []fedreportv1.Dimension
}

// dated is a query with a date range.
type dated interface {
	GetFrom() string
	GetTo() string
}

// maxDateLen is the longest from or to CheckBounds lets through to the
// servers' own validation, which words the refusal of a malformed date;
// anything longer is no date, and is refused here with a short echo.
const maxDateLen = 64

// startRequest is a StartRollupRequest: its query is its spec.
type startRequest interface {
	GetSpec() *fedreportv1.RollupSpec
}

// bounds refuses a query whose metrics or group_by list is longer than any
// valid query's.
func bounds(domain string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := CheckBounds(req, domain); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// CheckBounds returns an InvalidArgument status with field violations if req
// (an AggregateRequest or a StartRollupRequest) lists more metrics than
// MaxMetrics or more dimensions than MaxDimensions, or has a from or to far
// longer than a date; nil otherwise.
func CheckBounds(req any, domain string) error {
	prefix := ""
	q, ok := req.(query)
	if r, isStart := req.(startRequest); isStart {
		q, ok, prefix = r.GetSpec(), true, "spec."
	}
	if !ok {
		return nil
	}
	var vs []*errdetails.BadRequest_FieldViolation
	if n := len(q.GetMetrics()); n > MaxMetrics {
		vs = append(vs, &errdetails.BadRequest_FieldViolation{Field: prefix + "metrics",
			Description: fmt.Sprintf("%d metrics listed; at most %d (each metric once; none means all)", n, MaxMetrics)})
	}
	if n := len(q.GetGroupBy()); n > MaxDimensions {
		vs = append(vs, &errdetails.BadRequest_FieldViolation{Field: prefix + "group_by",
			Description: fmt.Sprintf("%d dimensions listed; at most %d (each dimension once)", n, MaxDimensions)})
	}
	if d, ok := q.(dated); ok {
		for _, f := range []struct{ name, v string }{{"from", d.GetFrom()}, {"to", d.GetTo()}} {
			if len(f.v) > maxDateLen {
				vs = append(vs, &errdetails.BadRequest_FieldViolation{Field: prefix + f.name,
					Description: echo.Quote(f.v) + " is not a date (want YYYY-MM-DD)"})
			}
		}
	}
	if len(vs) == 0 {
		return nil
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.GetField() + ": " + v.GetDescription()
	}
	msg := "invalid request: " + strings.Join(parts, "; ")
	return withDetails(codes.InvalidArgument, msg, ReasonInvalidArgument, domain, &errdetails.BadRequest{FieldViolations: vs})
}

func withDetails(code codes.Code, msg, reason, domain string, extra ...protoadapt.MessageV1) error {
	st := status.New(code, echo.Limit(msg, echo.MaxMessage))
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: domain}}, extra...)
	if withD, err := st.WithDetails(details...); err == nil {
		st = withD
	}
	return st.Err()
}

// retryInfo is the RetryInfo detail of a rate-limited call.
func retryInfo(d time.Duration) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(d)}
}
