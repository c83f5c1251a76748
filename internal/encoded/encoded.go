// Package encoded lets a gRPC server answer with a response already in its
// wire encoding: bytes a store kept (a coordinator's stored rollup) or made
// once for another purpose (a node's disclosure log entry holds the cells
// it answers with). Decoding them into messages only for the proto codec to
// encode them again was the largest cost of those calls.
//
// A service registers Desc(generated, handlers), whose handlers return a
// *Message, on a server with grpc.ForceServerCodecV2(NewServerCodec()). The
// codec sends a Message's buffers as they are and hands every other message
// (requests, health, reflection, errors' details) to gRPC's proto codec, so
// clients, grpcurl and reflection see the generated service unchanged.
// The bytes must be what proto.Marshal of the decoded response would give;
// each user tests that byte for byte.
package encoded

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Message is a response in its wire encoding. The server codec takes its
// buffers over (gRPC frees them once written); only that codec knows the
// type, so it never reaches another codec.
type Message struct {
	data mem.BufferSlice // empty for an empty message
	sent bool            // set by Marshal, which hands data over
}

// NewMessage returns the response whose encoding is data.
func NewMessage(data mem.BufferSlice) *Message { return &Message{data: data} }

// Bytes returns a copy of m's encoding (for tests and logs).
func (m *Message) Bytes() []byte { return m.data.Materialize() }

// ErrSent is the server codec's error for a Message marshalled twice; gRPC
// marshals a server's response once.
var ErrSent = errors.New("encoded response already sent")

// ServerCodec is the server codec for grpc.ForceServerCodecV2: it passes a
// *Message through and hands everything else to gRPC's proto codec.
type ServerCodec struct {
	proto encoding.CodecV2
}

// NewServerCodec returns the codec.
func NewServerCodec() ServerCodec {
	return ServerCodec{proto: encoding.GetCodecV2(protocodec.Name)}
}

// Marshal implements encoding.CodecV2.
func (c ServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*Message); ok {
		if m.sent {
			return nil, ErrSent
		}
		data := m.data
		m.data, m.sent = nil, true
		return data, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c ServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Name implements encoding.CodecV2: the codec speaks proto, and a forced
// server codec's name is not sent to clients.
func (ServerCodec) Name() string { return protocodec.Name }

// Handler is a unary method handler as protoc-gen-go-grpc writes them, for
// a method whose request type is *Req, calling fn with the service's
// implementation (the srv it was registered with) instead of the generated
// method. fn returns a *Message (or any other response message).
func Handler[Req any, PReq interface {
	*Req
	proto.Message
}](fullMethod string, fn func(srv any, ctx context.Context, req PReq) (any, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := PReq(new(Req))
		if err := dec(in); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return fn(srv, ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return fn(srv, ctx, req.(PReq))
		})
	}
}

// Desc returns the generated service description desc with the handlers of
// the methods named in handlers replaced. The service name, the other
// methods and the metadata stay the generated ones, so reflection describes
// the same service.
// It panics if desc has no method of a name in handlers.
func Desc(desc grpc.ServiceDesc, handlers map[string]grpc.MethodHandler) *grpc.ServiceDesc {
	desc.Methods = slices.Clone(desc.Methods)
	replaced := 0
	for i, m := range desc.Methods {
		if h, ok := handlers[m.MethodName]; ok {
			desc.Methods[i].Handler = h
			replaced++
		}
	}
	if replaced != len(handlers) {
		panic(fmt.Sprintf("encoded: %s lacks a method of %d handlers given", desc.ServiceName, len(handlers)-replaced))
	}
	return &desc
}
