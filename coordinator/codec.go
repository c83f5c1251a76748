package coordinator

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/isa-alliance/fedreport/internal/encoded"
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
// TestEncodedStartRollupEqualsTheDecodedAnswer check it. Package encoded
// carries the bytes through gRPC.

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
// with StartRollup, GetRollup and ListRollups answered with the stored bytes
// (package encoded). The generated handlers stay as the server's methods
// (the decoded path, which tests compare against).
func coordinatorServiceDesc() *grpc.ServiceDesc {
	return encoded.Desc(fedreportv1.CoordinatorService_ServiceDesc, map[string]grpc.MethodHandler{
		"StartRollup": encoded.Handler(fedreportv1.CoordinatorService_StartRollup_FullMethodName,
			func(srv any, ctx context.Context, req *fedreportv1.StartRollupRequest) (any, error) {
				return srv.(*server).startRollupEncoded(ctx, req)
			}),
		"GetRollup": encoded.Handler(fedreportv1.CoordinatorService_GetRollup_FullMethodName,
			func(srv any, ctx context.Context, req *fedreportv1.GetRollupRequest) (any, error) {
				return srv.(*server).getRollupEncoded(ctx, req)
			}),
		"ListRollups": encoded.Handler(fedreportv1.CoordinatorService_ListRollups_FullMethodName,
			func(srv any, ctx context.Context, req *fedreportv1.ListRollupsRequest) (any, error) {
				return srv.(*server).listRollupsEncoded(ctx, req)
			}),
	})
}
