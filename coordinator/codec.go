package coordinator

import (
	"context"
	"errors"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// A stored rollup is the deterministic encoding of the whole Rollup
// (marshalRollup), and GetRollupResponse and ListRollupsResponse hold rollups
// in field 1. So the coordinator answers GetRollup and ListRollups with the
// stored bytes framed as field 1, instead of decoding ~1,200 messages per
// 200-member rollup and encoding them again: that decode and encode were 59%
// of its CPU under GetRollup load (BENCHMARKS.md). StartRollupResponse holds
// its rollup in field 1 too, and StartRollup answers with the bytes the store
// has just written for it rather than encoding the rollup a second time. The
// bytes on the wire are the ones proto.Marshal of the decoded response would
// give, since no message under Rollup has a map (the only fields whose order
// Marshal leaves open); TestEncodedAnswersEqualDecodedOnes and
// TestEncodedStartRollupEqualsTheDecodedAnswer check it.

// encodedMessage is a response already in its wire encoding. The server
// codec sends its buffers as they are and takes them over (gRPC frees them
// once written); only the coordinator's server codec knows the type, so it
// never reaches another codec.
type encodedMessage struct {
	data mem.BufferSlice // empty for an empty message
	sent bool            // set by Marshal, which hands data over
}

// errEncodedSent is the server codec's error for an encodedMessage marshalled
// twice; gRPC marshals a server's response once.
var errEncodedSent = errors.New("encoded response already sent")

// serverCodec is the coordinator's server codec: it passes an encodedMessage
// through and hands everything else (requests, health, reflection, errors'
// details) to gRPC's proto codec, so other services and clients see no change.
type serverCodec struct {
	proto encoding.CodecV2
}

// newServerCodec returns the codec for grpc.ForceServerCodecV2.
func newServerCodec() serverCodec {
	return serverCodec{proto: encoding.GetCodecV2(protocodec.Name)}
}

// Marshal implements encoding.CodecV2.
func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMessage); ok {
		if m.sent {
			return nil, errEncodedSent
		}
		data := m.data
		m.data, m.sent = nil, true
		return data, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Name implements encoding.CodecV2: the codec speaks proto, and a forced
// server codec's name is not sent to clients.
func (serverCodec) Name() string { return protocodec.Name }

// responsePool holds the buffers of encoded responses; gRPC returns each to
// it once written.
var responsePool mem.BufferPool = &dirtyPool{}

// maxPooled is the largest buffer responsePool keeps (a ListRollups page of
// big rollups may need more; that one is left to the garbage collector).
const maxPooled = 1 << 20

// dirtyPool is a mem.BufferPool that hands buffers out as they were left.
// gRPC's default pool clears each buffer it hands out, a third of the cost
// of building a GetRollup answer; an encoded response overwrites every byte
// of its buffer (appendBytesField), so nothing of an earlier one can leak.
type dirtyPool struct {
	pool sync.Pool // of *[]byte
}

// Get implements mem.BufferPool.
func (p *dirtyPool) Get(n int) *[]byte {
	if mem.IsBelowBufferPoolingThreshold(n) {
		// mem.NewBuffer never returns so small a buffer to its pool either.
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.pool.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

// Put implements mem.BufferPool.
func (p *dirtyPool) Put(b *[]byte) {
	if cap(*b) <= maxPooled {
		p.pool.Put(b)
	}
}

// appendBytesField appends to data one buffer from pool holding the
// length-delimited field num with value v, copied.
func appendBytesField(data mem.BufferSlice, num protowire.Number, v []byte, pool mem.BufferPool) mem.BufferSlice {
	n := protowire.SizeTag(num) + protowire.SizeBytes(len(v))
	buf := pool.Get(n)
	b := protowire.AppendTag((*buf)[:0], num, protowire.BytesType)
	b = protowire.AppendBytes(b, v)
	*buf = b
	return append(data, mem.NewBuffer(buf, pool))
}

// coordinatorServiceDesc is the generated CoordinatorService description
// with StartRollup, GetRollup and ListRollups answered with the stored bytes. The
// generated handlers stay as the server's methods (the decoded path, which
// tests compare against); the service name, the other methods and the
// metadata are the generated ones, so reflection describes the same service.
func coordinatorServiceDesc() *grpc.ServiceDesc {
	desc := fedreportv1.CoordinatorService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i, m := range desc.Methods {
		switch m.MethodName {
		case "StartRollup":
			desc.Methods[i].Handler = startRollupEncodedHandler
		case "GetRollup":
			desc.Methods[i].Handler = getRollupEncodedHandler
		case "ListRollups":
			desc.Methods[i].Handler = listRollupsEncodedHandler
		}
	}
	return &desc
}

// startRollupEncodedHandler is the generated StartRollup handler calling
// (*server).startRollupEncoded.
func startRollupEncodedHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(fedreportv1.StartRollupRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*server)
	if interceptor == nil {
		return s.startRollupEncoded(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fedreportv1.CoordinatorService_StartRollup_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.startRollupEncoded(ctx, req.(*fedreportv1.StartRollupRequest))
	})
}

// getRollupEncodedHandler is the generated GetRollup handler calling
// (*server).getRollupEncoded.
func getRollupEncodedHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(fedreportv1.GetRollupRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*server)
	if interceptor == nil {
		return s.getRollupEncoded(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fedreportv1.CoordinatorService_GetRollup_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.getRollupEncoded(ctx, req.(*fedreportv1.GetRollupRequest))
	})
}

// listRollupsEncodedHandler is the generated ListRollups handler calling
// (*server).listRollupsEncoded.
func listRollupsEncodedHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(fedreportv1.ListRollupsRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*server)
	if interceptor == nil {
		return s.listRollupsEncoded(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fedreportv1.CoordinatorService_ListRollups_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.listRollupsEncoded(ctx, req.(*fedreportv1.ListRollupsRequest))
	})
}
