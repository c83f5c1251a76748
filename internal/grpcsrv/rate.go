package grpcsrv

import (
	"context"
	"fmt"
	"math"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// maxBuckets bounds the buckets a limiter keeps; past it, full buckets (of
// identities idle long enough to have their whole burst back) are dropped.
// Identities come from certificates the alliance CA issued, so the bound is
// only a backstop.
const maxBuckets = 4096

// rateLimiter is a token bucket per (method, identity).
type rateLimiter struct {
	rates  map[string]Rate
	now    func() time.Time
	domain string

	mu      sync.Mutex // protects buckets
	buckets map[bucketKey]*bucket
}

type bucketKey struct{ method, id string }

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rates map[string]Rate, now func() time.Time, domain string) *rateLimiter {
	return &rateLimiter{rates: rates, now: now, domain: domain, buckets: map[bucketKey]*bucket{}}
}

// take spends one token of id's bucket for method. When none is left it
// reports how long until one is.
func (l *rateLimiter) take(method, id string, r Rate) (ok bool, retryIn time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := bucketKey{method, id}
	b, found := l.buckets[k]
	if !found {
		if len(l.buckets) >= maxBuckets {
			l.sweepLocked(now)
		}
		b = &bucket{tokens: float64(r.Burst), last: now}
		l.buckets[k] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(float64(r.Burst), b.tokens+elapsed.Seconds()*r.PerSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if r.PerSecond <= 0 {
		return false, time.Duration(math.MaxInt64)
	}
	wait := time.Duration((1 - b.tokens) / r.PerSecond * float64(time.Second))
	return false, wait.Round(time.Millisecond) + time.Millisecond
}

// sweepLocked drops the buckets that have refilled completely: forgetting
// them changes nothing.
func (l *rateLimiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		r := l.rates[k.method]
		if r.PerSecond > 0 && b.tokens+now.Sub(b.last).Seconds()*r.PerSecond >= float64(r.Burst) {
			delete(l.buckets, k)
		}
	}
}

func (l *rateLimiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r, limited := l.rates[info.FullMethod]
	if !limited {
		return handler(ctx, req)
	}
	// Authorization ran first, so a limited method always has an identity;
	// a call without one (a local socket) is not the network's to limit.
	id, ok := identity.FromContext(ctx)
	if !ok {
		return handler(ctx, req)
	}
	if ok, wait := l.take(info.FullMethod, id.String(), r); !ok {
		method := path.Base(info.FullMethod)
		msg := fmt.Sprintf("rate limit: %s may call %s %s (bursts of %d); retry in %s",
			id, method, perMinute(r.PerSecond), r.Burst, roundWait(wait))
		return nil, withDetails(codes.ResourceExhausted, msg, ReasonRateLimited, l.domain, retryInfo(wait))
	}
	return handler(ctx, req)
}

// roundWait shows a retry delay to a tenth of a second, or to 10 ms below a
// second, so that a short delay never reads "retry in 0s".
func roundWait(d time.Duration) string {
	if d < time.Second {
		return max(d.Round(10*time.Millisecond), 10*time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// perMinute says a rate in words: "2 times a second", "30 times a minute".
func perMinute(perSecond float64) string {
	if perSecond >= 1 {
		return fmt.Sprintf("%g times a second", perSecond)
	}
	return fmt.Sprintf("%g times a minute", math.Round(perSecond*60*100)/100)
}
