package grpcsrv

// A gRPC client accepts messages of up to 4 MiB unless told otherwise
// (grpcurl, a coordinator asking its members, any generated client), so
// fedreport's servers keep what such clients read under it.
const clientRecvMsgSize = 4 << 20

// MaxAnswerBytes bounds the cells of one Aggregate answer, leaving room for
// the response's other fields: a node refuses a larger answer with what to
// change rather than send what its caller cannot read.
const MaxAnswerBytes = clientRecvMsgSize - 4<<10

// MaxPageBytes bounds the items of one page of a List method (AIP-158 lets
// a page hold fewer than page_size); the margin covers the page token.
const MaxPageBytes = clientRecvMsgSize - 64<<10

// PageBytes counts the encoded size of a page's items.
type PageBytes struct{ n, total int }

// Add reports whether an item of size bytes (as framed in the response)
// still fits the page, and counts it if so. The first always fits, so every
// page makes progress.
func (p *PageBytes) Add(size int) bool {
	if p.n > 0 && p.total+size > MaxPageBytes {
		return false
	}
	p.n++
	p.total += size
	return true
}
