package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/coordinator"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// FanOut is a rollup's fan-out without the coordinator's work: rounds of one
// call to every member at once, made from the coordinator's process (its
// child) over connections of its own, dialed as the coordinator dials its
// members, each call on a goroutine kept from round to round as the
// coordinator keeps its callers. With Health/Check it is what reaching the
// members costs at all; with the members' Aggregate, what their answers add;
// the rollup adds the coordinator's work to that.
type FanOut struct {
	Call    string        `json:"call"`
	Latency stats.Summary `json:"latency"`
	// CPU is the CPU time per timed round of the members' process and of
	// the caller's, the coordinator's.
	CPU RollupCPU `json:"cpu_per_round"`
}

// memberDialOptions are the options the coordinator dials its members with
// (coordinator/registry.go), but for the TLS credentials: static 4 MiB
// flow-control windows, which also turn off grpc's bandwidth-estimation
// pings. The fan-out dials with the same so that it measures the same
// connections; reconnection backoff does not matter here, the members stay up.
func memberDialOptions() []grpc.DialOption {
	const window = 4 << 20
	return []grpc.DialOption{
		grpc.WithStaticStreamWindowSize(window),
		grpc.WithStaticConnWindowSize(window),
	}
}

// The calls a fan-out can make.
const (
	healthCall    = "Health/Check"
	aggregateCall = "Aggregate"
)

// fanOutRollupID is the rollup id of the bench's own Aggregate fan-out, so
// that the members' logs tell its entries from the coordinator's.
const fanOutRollupID = "bench-fan-out"

// fanOutRequest asks a coordinator child for rounds of one call to every
// member ("fan-out").
type fanOutRequest struct {
	// Call is healthCall or aggregateCall.
	Call string `json:"call"`
	// Aggregate is the encoded AggregateRequest of aggregateCall.
	Aggregate []byte `json:"aggregate,omitempty"`
	Warmup    int    `json:"warmup"`
	Rounds    int    `json:"rounds"`
}

// aggregateFanOut is the fan-out of req, as the coordinator asks it of each
// member.
func aggregateFanOut(req *fedreportv1.AggregateRequest) (fanOutRequest, error) {
	b, err := proto.Marshal(req)
	return fanOutRequest{Call: aggregateCall, Aggregate: b}, err
}

// fanOutReply is a child's timing of a fanOutRequest's rounds.
type fanOutReply struct {
	Latency stats.Summary `json:"latency"`
	// CPUMs is the child's CPU time per timed round.
	CPUMs float64 `json:"cpu_ms_per_round"`
}

// fanOutCall is one call to a member on its connection.
type fanOutCall func(context.Context, *grpc.ClientConn) error

// call is the call r names.
func (r fanOutRequest) call() (fanOutCall, error) {
	switch r.Call {
	case healthCall:
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}, nil
	case aggregateCall:
		req := &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: timestamppb.Now()}
		if err := proto.Unmarshal(r.Aggregate, req); err != nil {
			return nil, fmt.Errorf("fan-out of %s: request: %w", r.Call, err)
		}
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fedreportv1.NewAggregationServiceClient(c).Aggregate(ctx, req)
			return err
		}, nil
	}
	return nil, fmt.Errorf("fan-out call %q: want %q or %q", r.Call, healthCall, aggregateCall)
}

// fanOuts has coord time warmup+rounds rounds of each of calls to every one
// of its members, one call after the other, and returns them in the order of
// calls, each with this process's CPU time over its timed rounds (the
// members', when this process serves them).
func (b *bench) fanOuts(ctx context.Context, coord *child, warmup, rounds int, calls ...fanOutRequest) ([]FanOut, error) {
	out := make([]FanOut, len(calls))
	for i, req := range calls {
		b.logf("timing %d rounds of %s from %s to every member at once, without the coordinator's work", rounds, req.Call, coord.name)
		b.quiesce(ctx, nil)
		req.Warmup, req.Rounds = warmup, 0
		if _, err := coord.fanOut(ctx, req); err != nil {
			return nil, err
		}
		cpu0, err := stats.CPUTime()
		if err != nil {
			return nil, err
		}
		req.Warmup, req.Rounds = 0, rounds
		r, err := coord.fanOut(ctx, req)
		if err != nil {
			return nil, err
		}
		cpu1, err := stats.CPUTime()
		if err != nil {
			return nil, err
		}
		f := FanOut{Call: req.Call, Latency: r.Latency, CPU: RollupCPU{MembersMs: stats.Ms(cpu1-cpu0) / float64(rounds), CoordinatorMs: r.CPUMs}}
		out[i] = f
		b.logf("  fan-out of %s: p50 %s ms, p99 %s ms; CPU per round (ms): %s", f.Call, ms(f.Latency.P50ms), ms(f.Latency.P99ms), f.CPU)
	}
	return out, nil
}

// fanOut asks a coordinator child for req's rounds.
func (c *child) fanOut(ctx context.Context, req fanOutRequest) (fanOutReply, error) {
	// Each call in a round has callTimeout at most.
	r, err := c.callWithin(ctx, childRequest{Cmd: "fan-out", FanOut: &req}, time.Duration(req.Warmup+req.Rounds+1)*callTimeout)
	if err != nil {
		return fanOutReply{}, err
	}
	if r.FanOut == nil {
		return fanOutReply{}, fmt.Errorf("%s: no fan-out in reply", c.name)
	}
	return *r.FanOut, nil
}

// fanOutCaller makes a coordinator child's fan-outs, over connections of
// its own to members, dialed at the first.
type fanOutCaller struct {
	members []coordinator.Member
	dial    func(coordinator.Member) (*grpc.ClientConn, error)
	conns   []*grpc.ClientConn
}

// run times req's rounds.
func (f *fanOutCaller) run(ctx context.Context, req fanOutRequest) (fanOutReply, error) {
	call, err := req.call()
	if err != nil {
		return fanOutReply{}, err
	}
	if f.conns == nil {
		// All or none: a later fan-out must not go to some members only.
		conns := make([]*grpc.ClientConn, 0, len(f.members))
		for _, m := range f.members {
			c, err := f.dial(m)
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return fanOutReply{}, fmt.Errorf("member %s: %w", m.Code, err)
			}
			conns = append(conns, c)
		}
		f.conns = conns
	}
	r, err := fanOut(ctx, f.conns, req.Warmup, req.Rounds, call)
	if err != nil {
		return r, fmt.Errorf("fan-out of %s: %w", req.Call, err)
	}
	return r, nil
}

func (f *fanOutCaller) close() error {
	var errs []error
	for _, c := range f.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// fanOut times warmup+rounds rounds of call to every one of conns at once,
// and returns the timed rounds' latencies and this process's CPU time per
// timed round. A round lasts until the last call returns; any error ends
// the measurement.
func fanOut(ctx context.Context, conns []*grpc.ClientConn, warmup, rounds int, call fanOutCall) (fanOutReply, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each round's calls share one deadline, as a rollup's do.
	starts := make([]chan context.Context, len(conns))
	done := make(chan error, len(conns))
	for i, c := range conns {
		starts[i] = make(chan context.Context)
		go func() {
			for rctx := range starts[i] {
				done <- call(rctx, c)
			}
		}()
	}
	defer func() {
		for _, s := range starts {
			close(s)
		}
	}()
	round := func(rctx context.Context) error {
		for _, s := range starts {
			s <- rctx
		}
		var first error
		failed := 0
		for range conns {
			if err := <-done; err != nil {
				failed++
				first = cmpErr(first, err)
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d calls failed, the first: %w", failed, len(conns), first)
		}
		return nil
	}
	if _, err := latencies(ctx, warmup, 0, round); err != nil || rounds == 0 {
		return fanOutReply{}, err
	}
	cpu0, err := stats.CPUTime()
	if err != nil {
		return fanOutReply{}, err
	}
	lat, err := latencies(ctx, 0, rounds, round)
	if err != nil {
		return fanOutReply{}, err
	}
	cpu1, err := stats.CPUTime()
	if err != nil {
		return fanOutReply{}, err
	}
	return fanOutReply{Latency: lat.Summarize(), CPUMs: stats.Ms(cpu1-cpu0) / float64(rounds)}, nil
}
