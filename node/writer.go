package node

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Writer is who holds a store's write lock (an ingest stream or a
// retraction) and since when.
type Writer struct {
	Caller string // the caller's identity, or LocalAdmin
	Since  time.Time
}

// writerHolder records the current Writer of a store.
type writerHolder struct {
	mu sync.Mutex // protects w
	w  Writer
}

func (h *writerHolder) set(w Writer) {
	h.mu.Lock()
	h.w = w
	h.mu.Unlock()
}

func (h *writerHolder) get() Writer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.w
}

type writerKey struct{}

// writeRequest is what a server tells the store about a write it asks for:
// who asks, for the holder record, and whom to tell when the write must
// wait for another's lock.
type writeRequest struct {
	caller string
	wait   func(holder Writer)
}

// withWriter returns ctx telling the store that caller asks for the write
// lock and, if wait is not nil, to call it with the holder before waiting
// for the lock.
func withWriter(ctx context.Context, caller string, wait func(holder Writer)) context.Context {
	return context.WithValue(ctx, writerKey{}, writeRequest{caller: caller, wait: wait})
}

func writeRequestOf(ctx context.Context) writeRequest {
	r, _ := ctx.Value(writerKey{}).(writeRequest)
	return r
}

// Response header keys of an ingest stream, sent as soon as the node knows:
// the stream holds the store's write lock (HeaderWriteLockAcquired, with the
// time), or it must first wait for the caller named by HeaderWriteLockHeldBy,
// who has held it since HeaderWriteLockHeldSince (RFC 3339). The write
// proceeds once that caller's stream ends: committed, failed, cancelled or,
// silent for too long, ended by the node (grpcsrv.Limits.IngestIdleTimeout).
const (
	HeaderWriteLockAcquired  = "fedreport-write-lock-acquired"
	HeaderWriteLockHeldBy    = "fedreport-write-lock-held-by"
	HeaderWriteLockHeldSince = "fedreport-write-lock-held-since"
)

// lockNotice tells an ingest stream's client about the write lock, in the
// response headers, which can be sent once.
type lockNotice struct {
	ss   grpc.ServerStream
	sent bool
}

// waiting is the wait function of withWriter.
func (n *lockNotice) waiting(h Writer) {
	n.sent = true
	_ = n.ss.SendHeader(metadata.Pairs(HeaderWriteLockHeldBy, h.Caller, HeaderWriteLockHeldSince, h.Since.UTC().Format(time.RFC3339)))
}

// acquired says the stream holds the lock, unless waiting said more.
func (n *lockNotice) acquired(now time.Time) {
	if !n.sent {
		_ = n.ss.SendHeader(metadata.Pairs(HeaderWriteLockAcquired, now.UTC().Format(time.RFC3339)))
	}
}
