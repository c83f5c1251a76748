package grpcsrv

import (
	"context"
	"fmt"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// ReasonRequestTooLarge: a request message is larger than its method takes.
const ReasonRequestTooLarge = "REQUEST_TOO_LARGE"

// recvLimit is the largest request message method takes.
func (l Limits) recvLimit(method string) int {
	n, ok := l.RecvLimits[method]
	if !ok {
		n = l.RecvLimit
	}
	return min(n, l.MaxRecvMsgSize)
}

// checkRecv refuses a request message larger than method takes.
//
// grpc checks only one, server-wide limit (MaxRecvMsgSize) itself, on the
// message's length prefix before reading it, and decodes a unary request
// before any interceptor runs; a method's own, smaller limit can only be
// checked here, on the decoded message. What a peer can make a server hold
// before that is bounded by MaxRecvMsgSize per call, and only peers the
// authorization tap (authz.Tap) let through get that far.
func (l Limits) checkRecv(method string, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	limit := l.recvLimit(method)
	if limit >= l.MaxRecvMsgSize {
		return nil // grpc checked it on the length prefix
	}
	if n := proto.Size(msg); n > limit {
		return withDetails(codes.ResourceExhausted,
			fmt.Sprintf("request of %d bytes is over the limit of %d bytes for %s; a valid request is far smaller", n, limit, path.Base(method)),
			ReasonRequestTooLarge, l.ErrorDomain)
	}
	return nil
}

func (l Limits) recvLimitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := l.checkRecv(info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (l Limits) recvLimitStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &limitedStream{ServerStream: ss, l: l, method: info.FullMethod})
}

// limitedStream checks each request message of a stream against its
// method's limit.
type limitedStream struct {
	grpc.ServerStream
	l      Limits
	method string
}

func (s *limitedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.l.checkRecv(s.method, m)
}
