package grpcsrv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// DefaultIngestIdleTimeout is how long an ingest stream may send nothing
// while the node waits for its next message before the node ends it.
const DefaultIngestIdleTimeout = time.Minute

// IdleTrailer is the trailer key of a stream ended for sending nothing for
// too long; its value is the timeout ("1m0s"). The status itself is grpc's
// CANCELLED, which says only that the server cancelled the call.
const IdleTrailer = "fedreport-idle-timeout"

// idleStreams are the methods whose streams IngestIdleTimeout applies to.
var idleStreams = map[string]bool{fedreportv1.NodeAdminService_IngestRecords_FullMethodName: true}

// tapHandle is the listener's grpc.InTapHandle: l.Authorize, then, for an
// ingest stream, a context the idle watch can cancel. grpc reads a
// stream's messages under the context its tap handle returns, so
// cancelling it ends a RecvMsg that waits for a silent client, which
// nothing else on the server side can.
func (l Limits) tapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if l.Authorize != nil {
		var err error
		if ctx, err = l.Authorize(ctx, info); err != nil {
			return ctx, err
		}
	}
	if l.IngestIdleTimeout > 0 && idleStreams[info.FullMethodName] {
		ctx, cancel := context.WithCancel(ctx)
		return context.WithValue(ctx, idleKey{}, &idleWatch{d: l.IngestIdleTimeout, cancel: cancel}), nil
	}
	return ctx, nil
}

type idleKey struct{}

// idleWatch ends a stream whose client sends nothing for d while the
// server waits for its next message. Only the time spent waiting in
// RecvMsg counts: a server busy with what it received, or waiting for the
// store's write lock, is not the client's silence.
type idleWatch struct {
	d      time.Duration
	cancel context.CancelFunc

	mu    sync.Mutex // protects timer and fired
	timer *time.Timer
	fired bool
}

// arm starts the clock before a RecvMsg on ss.
func (w *idleWatch) arm(ss grpc.ServerStream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.d, func() {
			w.mu.Lock()
			w.fired = true
			w.mu.Unlock()
			ss.SetTrailer(metadata.Pairs(IdleTrailer, w.d.String()))
			w.cancel()
		})
		return
	}
	w.timer.Reset(w.d)
}

// disarm stops the clock after a RecvMsg and reports whether it ran out.
func (w *idleWatch) disarm() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.fired
}

func (l Limits) idleStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w, ok := ss.Context().Value(idleKey{}).(*idleWatch)
	if !ok {
		return handler(srv, ss)
	}
	defer w.disarm()
	return handler(srv, &idleStream{ServerStream: ss, w: w})
}

// idleStream is a ServerStream whose RecvMsg runs under its idle watch.
type idleStream struct {
	grpc.ServerStream
	w *idleWatch
}

func (s *idleStream) RecvMsg(m any) error {
	s.w.arm(s.ServerStream)
	err := s.ServerStream.RecvMsg(m)
	if s.w.disarm() && err != nil {
		// The client was sent grpc's CANCELLED with IdleTrailer; this is
		// what the handler sees, and logs.
		return status.Error(codes.DeadlineExceeded, fmt.Sprintf("the client sent nothing for %s; the stream was ended", s.w.d))
	}
	return err
}
