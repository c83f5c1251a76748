package main

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// FanOut is a rollup's fan-out without the coordinator: rounds of one call to
// every member at once, from this process (which also serves the members),
// over connections dialed as the coordinator dials its members, each call on
// a goroutine kept from round to round as the coordinator keeps its callers.
// With Health/Check it is what reaching the members costs at all; with the
// members' Aggregate, what their answers add; the rollup adds the
// coordinator to that.
type FanOut struct {
	Call    string        `json:"call"`
	Latency stats.Summary `json:"latency"`
	// CPUMs is this process's CPU time per round, in ms: both ends of every
	// call.
	CPUMs float64 `json:"cpu_ms_per_round"`
}

// fanOutRollupID is the rollup id of the bench's own Aggregate fan-out, so
// that the members' logs tell its entries from the coordinator's.
const fanOutRollupID = "bench-fan-out"

// fanOutCall is one call to a member on its connection.
type fanOutCall func(context.Context, *grpc.ClientConn) error

// namedCall is a fanOutCall with the name the results give it.
type namedCall struct {
	name string
	call fanOutCall
}

// healthCheck is the trivial call of the fan-out floor.
func healthCheck(ctx context.Context, c *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// memberAggregate is req, as the coordinator asks it of each member.
func memberAggregate(req *fedreportv1.AggregateRequest) fanOutCall {
	return func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := fedreportv1.NewAggregationServiceClient(c).Aggregate(ctx, req)
		return err
	}
}

// fanOuts times warmup+rounds rounds of each of calls to every member of
// list, one call after the other, and returns them in the order of calls.
func (b *bench) fanOuts(ctx context.Context, list []coordinator.Member, warmup, rounds int, calls ...namedCall) (_ []FanOut, err error) {
	conns := make([]*grpc.ClientConn, 0, len(list))
	defer func() {
		for _, c := range conns {
			err = errors.Join(err, c.Close())
		}
	}()
	for _, m := range list {
		c, err := b.pki.dial(m.Address, benchCoordinator, mtls.ExpectID(identity.Node(trustDomain, m.Code)), coordinator.MemberDialOptions()...)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	out := make([]FanOut, len(calls))
	for i, c := range calls {
		b.logf("timing %d rounds of %s to %d members at once, without the coordinator", rounds, c.name, len(conns))
		b.quiesce(ctx, nil)
		f, err := fanOut(ctx, conns, warmup, rounds, c.call)
		if err != nil {
			return nil, fmt.Errorf("fan-out of %s: %w", c.name, err)
		}
		f.Call = c.name
		out[i] = f
		b.logf("  fan-out of %s: p50 %s ms, p99 %s ms; CPU per round %s ms", c.name, ms(f.Latency.P50ms), ms(f.Latency.P99ms), ms(f.CPUMs))
	}
	return out, nil
}

// fanOut times warmup+rounds rounds of call to every one of conns at once,
// and returns the timed rounds' latencies and this process's CPU time per
// timed round. A round lasts until the last call returns; any error ends
// the measurement.
func fanOut(ctx context.Context, conns []*grpc.ClientConn, warmup, rounds int, call fanOutCall) (FanOut, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	starts := make([]chan struct{}, len(conns))
	done := make(chan error, len(conns))
	for i, c := range conns {
		starts[i] = make(chan struct{})
		go func() {
			for range starts[i] {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				done <- call(cctx, c)
				cancel()
			}
		}()
	}
	defer func() {
		for _, s := range starts {
			close(s)
		}
	}()
	round := func(context.Context) error {
		for _, s := range starts {
			s <- struct{}{}
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
	if _, err := latencies(ctx, warmup, 0, round); err != nil {
		return FanOut{}, err
	}
	cpu0, err := stats.CPUTime()
	if err != nil {
		return FanOut{}, err
	}
	lat, err := latencies(ctx, 0, rounds, round)
	if err != nil {
		return FanOut{}, err
	}
	cpu1, err := stats.CPUTime()
	if err != nil {
		return FanOut{}, err
	}
	return FanOut{Latency: lat.Summarize(), CPUMs: stats.Ms(cpu1-cpu0) / float64(rounds)}, nil
}
