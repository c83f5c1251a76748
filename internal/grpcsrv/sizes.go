package grpcsrv

import "fmt"

// A gRPC client accepts messages of up to 4 MiB unless told otherwise
// (grpcurl, a coordinator asking its members, any generated client), so
// fedreport's servers keep what such clients read under it.
const clientRecvMsgSize = 4 << 20

// MaxAnswerBytes bounds the cells of one Aggregate answer, leaving room for
// the response's other fields: a node refuses a larger answer with what to
// change rather than send what its caller cannot read.
const MaxAnswerBytes = clientRecvMsgSize - 4<<10

// AnswerTooLargeError is an Aggregate answer refused because its cells
// would take more than Limit bytes: a node or a coordinator answering as a
// member refuses it before logging or sending anything.
type AnswerTooLargeError struct {
	Cells, Bytes, Limit int
}

func (e *AnswerTooLargeError) Error() string {
	return fmt.Sprintf("the answer would be %d cells in %d bytes, over the limit of %d bytes for one answer (one gRPC message); ask for a shorter period (from, to) or group by fewer dimensions",
		e.Cells, e.Bytes, e.Limit)
}

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
