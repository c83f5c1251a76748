package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// A node limits the Aggregate calls of each identity (internal/grpcsrv), and
// every rollup, whoever started it, calls as the coordinator's identity. So
// the coordinator paces its own calls to each member at the rate a node
// grants by default, and a call the member still refuses RESOURCE_EXHAUSTED
// with a google.rpc.RetryInfo is made again after the delay the member asks
// for. Both waits stay within the member's deadline: concurrent rollups
// queue for a member instead of failing each other.

// DefaultMemberRate is the pace of the coordinator's Aggregate calls to each
// member when Config.MemberRate is zero: the rate a node grants each caller
// identity by default.
var DefaultMemberRate = grpcsrv.DefaultRates[fedreportv1.AggregationService_Aggregate_FullMethodName]

// minRetryDelay is the shortest wait before asking again a member that
// refused with a RetryInfo, whatever delay it gave: a member answering "retry
// in 0s" must not be asked in a tight loop.
const minRetryDelay = 50 * time.Millisecond

// pacer is a token bucket whose takers queue: Burst calls go at once, the
// next ones each wait for a token to refill, in the order they came.
type pacer struct {
	rate grpcsrv.Rate

	mu     sync.Mutex // protects tokens and last
	tokens float64    // below 0 when calls are waiting for tokens not yet refilled
	last   time.Time  // when tokens was last refilled
}

func newPacer(r grpcsrv.Rate) *pacer {
	return &pacer{rate: r, tokens: float64(r.Burst), last: time.Now()}
}

// paceError is a call not made because the calls queued ahead of it for the
// same member would not leave it its turn before its deadline.
type paceError struct {
	wait time.Duration // how long the call would have had to wait
	rate grpcsrv.Rate
}

func (e *paceError) Error() string {
	return fmt.Sprintf("not asked: the calls to this member queued ahead of this one (the coordinator asks a member at most %g times a second, in bursts of %d) would have taken %v, past the member's deadline",
		e.rate.PerSecond, e.rate.Burst, e.wait.Round(100*time.Millisecond))
}

// wait takes a token, waiting for its turn under ctx. A call whose turn
// comes after ctx's deadline takes no token and gets a *paceError at once.
func (p *pacer) wait(ctx context.Context) error {
	if p.rate.PerSecond <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	p.tokens = min(float64(p.rate.Burst), p.tokens+now.Sub(p.last).Seconds()*p.rate.PerSecond)
	p.last = now
	var turn time.Duration
	if p.tokens < 1 {
		turn = time.Duration((1 - p.tokens) / p.rate.PerSecond * float64(time.Second))
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(turn).After(dl) {
		p.mu.Unlock()
		return &paceError{wait: turn, rate: p.rate}
	}
	p.tokens--
	p.mu.Unlock()
	if turn == 0 {
		return nil
	}
	t := time.NewTimer(turn)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// The turn goes unused: give it back to the calls behind.
		p.mu.Lock()
		p.tokens++
		p.mu.Unlock()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// retryDelay returns the delay of the google.rpc.RetryInfo of a
// RESOURCE_EXHAUSTED status (at least minRetryDelay), and whether err is one.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return max(ri.GetRetryDelay().AsDuration(), minRetryDelay), true
		}
	}
	return 0, false
}

// aggregate asks member m under mctx (the member's deadline), in its turn
// (pacer), and again after the delay the member asks for each time it
// refuses with a RetryInfo, as long as that delay ends before the deadline.
// A refusal whose delay would not end in time is returned as it came.
func aggregate(mctx context.Context, m *memberConn, req *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	for {
		if err := m.pace.wait(mctx); err != nil {
			return nil, err
		}
		resp, err := m.client.Aggregate(mctx, req)
		delay, ok := retryDelay(err)
		if !ok {
			return resp, err
		}
		if dl, has := mctx.Deadline(); has && time.Now().Add(delay).After(dl) {
			return nil, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-mctx.Done():
			t.Stop()
			return nil, err
		}
	}
}
