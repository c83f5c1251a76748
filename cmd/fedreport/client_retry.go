package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
)

// maxRateLimitWaits is how many times one call waits out a rate limit.
const maxRateLimitWaits = 5

// noticeKey carries the writer the CLI tells its waits on (stderr).
type noticeKey struct{}

// withNotices returns ctx carrying w, where calls say that they wait.
func withNotices(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, noticeKey{}, w)
}

// waitOutRateLimits is every CLI connection's unary interceptor: a call a
// server refuses for its rate limit (RESOURCE_EXHAUSTED, reason
// RATE_LIMITED, with a RetryInfo) is made again after the delay the server
// gave, saying so on stderr, as long as the call's deadline leaves room for
// it; otherwise the refusal stands, with its own words on when to retry.
func waitOutRateLimits(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	for waits := 0; ; waits++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		delay, limited := rateLimitDelay(err)
		if !limited || waits == maxRateLimitWaits {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return err
		}
		if w, ok := ctx.Value(noticeKey{}).(io.Writer); ok {
			fmt.Fprintf(w, "waiting: the server's rate limit allows this call again in %s; retrying then (%s)\n", delay, status.Convert(err).Message())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// rateLimitDelay returns the delay of a rate-limit refusal, and whether err
// is one.
func rateLimitDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	var (
		limited bool
		delay   time.Duration
		hasInfo bool
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			limited = d.GetReason() == grpcsrv.ReasonRateLimited
		case *errdetails.RetryInfo:
			delay, hasInfo = d.GetRetryDelay().AsDuration(), true
		}
	}
	return delay, limited && hasInfo && delay >= 0
}
