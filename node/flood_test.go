package node

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// h2Flood is a bare HTTP/2 client over mTLS that sends gRPC requests of a
// given size from one reused buffer, so that the process's allocations
// during a flood are the server's, not the client's. It follows HTTP/2 flow
// control as a client must, and keeps sending a stream's body after the
// server refused it, as a flooding client would.
type h2Flood struct {
	conn *tls.Conn
	fr   *http2.Framer
	wmu  sync.Mutex // protects writes to fr
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	mu       sync.Mutex // protects the fields below
	cond     *sync.Cond
	ready    bool              // the server's SETTINGS arrived
	window   int64             // the connection's send window
	statuses map[uint32]string // grpc-status (or "RST") of each finished stream
	messages map[uint32]string // grpc-message of each finished stream
	err      error             // why the reader stopped
}

func dialH2(t *testing.T, addr string, cfg *tls.Config) *h2Flood {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &h2Flood{conn: conn, fr: http2.NewFramer(conn, conn), window: 65535,
		statuses: map[uint32]string{}, messages: map[uint32]string{}}
	f.cond = sync.NewCond(&f.mu)
	f.enc = hpack.NewEncoder(&f.hbuf)
	f.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := f.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.read()
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return f
}

func (f *h2Flood) read() {
	for {
		frame, err := f.fr.ReadFrame()
		if err != nil {
			f.mu.Lock()
			f.err = err
			f.cond.Broadcast()
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		switch fr := frame.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				f.ready = true
				f.wmu.Lock()
				_ = f.fr.WriteSettingsAck()
				f.wmu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			if fr.StreamID == 0 {
				f.window += int64(fr.Increment)
			}
		case *http2.PingFrame:
			if !fr.IsAck() {
				f.wmu.Lock()
				_ = f.fr.WritePing(true, fr.Data)
				f.wmu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if s := fr.PseudoValue("status"); s != "" && s != "200" {
				f.statuses[fr.StreamID] = "http " + s
			}
			for _, h := range fr.RegularFields() {
				switch h.Name {
				case "grpc-status":
					f.statuses[fr.StreamID] = h.Value
				case "grpc-message":
					f.messages[fr.StreamID] = h.Value
				}
			}
		case *http2.RSTStreamFrame:
			if _, ok := f.statuses[fr.StreamID]; !ok {
				f.statuses[fr.StreamID] = "RST " + fr.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			f.err = fmt.Errorf("GOAWAY %v", fr.ErrCode)
		}
		f.cond.Broadcast()
		f.mu.Unlock()
	}
}

// take waits until the connection may send n bytes and counts them sent.
func (f *h2Flood) take(n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for (!f.ready || f.window < n) && f.err == nil {
		f.cond.Wait()
	}
	if f.err != nil {
		return f.err
	}
	f.window -= n
	return nil
}

// send sends one request of method on stream id whose message is prefix
// followed by body bytes of filler, in frames of at most 16 KiB.
func (f *h2Flood) send(id uint32, method string, prefix []byte, body int, filler []byte) error {
	f.hbuf.Reset()
	for _, h := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method}, {":authority", "node"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = f.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	if err := f.take(0); err != nil { // the server's SETTINGS first
		return err
	}
	f.wmu.Lock()
	err := f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: f.hbuf.Bytes(), EndHeaders: true})
	f.wmu.Unlock()
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 5+len(prefix))
	msg = append(msg, 0, 0, 0, 0, 0)
	msg[1], msg[2], msg[3], msg[4] = byte((len(prefix)+body)>>24), byte((len(prefix)+body)>>16), byte((len(prefix)+body)>>8), byte(len(prefix)+body)
	msg = append(msg, prefix...)
	chunks := [][]byte{msg}
	for left := body; left > 0; left -= len(filler) {
		chunks = append(chunks, filler[:min(left, len(filler))])
	}
	for i, c := range chunks {
		if err := f.take(int64(len(c))); err != nil {
			return err
		}
		f.wmu.Lock()
		err := f.fr.WriteData(id, i == len(chunks)-1, c)
		f.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// wait waits until every stream of ids has finished and returns their
// statuses and messages.
func (f *h2Flood) wait(ids []uint32) (map[uint32]string, map[uint32]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		n := 0
		for _, id := range ids {
			if _, ok := f.statuses[id]; ok {
				n++
			}
		}
		if n == len(ids) {
			return f.statuses, f.messages, nil
		}
		if f.err != nil {
			return nil, nil, f.err
		}
		f.cond.Wait()
	}
}

// TestADeniedFloodCostsTheNodeLittleMemory has an analyst, whom a node
// refuses every call but health and reflection, send 4 MiB Aggregate
// requests over several connections at once. The node refuses each when
// its headers arrive, before reading its body: what the process allocates
// during the whole flood stays a small fraction of one request per call.
// Not parallel: it measures the process's allocations.
func TestADeniedFloodCostsTheNodeLittleMemory(t *testing.T) {
	tn := startNode(t, Policy{})
	cfg := tn.ca.ClientTLS(t, identity.Analyst(td, "eve"), identity.Node(td, "FR"))
	const conns, perConn = 4, 8
	const size = grpcsrv.DefaultMaxRecvMsgSize - 64 // a request grpc reads whole, within a stream's window
	// The message is one rollup_id field: its tag (1 byte) and length (a
	// 4-byte varint at this size), then the id.
	body := size - 5
	prefix := protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.BytesType), uint64(body))
	filler := bytes.Repeat([]byte("r"), 16<<10)

	floods := make([]*h2Flood, conns)
	for i := range floods {
		floods[i] = dialH2(t, tn.addr, cfg)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, f := range floods {
		wg.Go(func() {
			ids := make([]uint32, perConn)
			for i := range ids {
				ids[i] = uint32(2*i + 1)
				if err := f.send(ids[i], fedreportv1.AggregationService_Aggregate_FullMethodName, prefix, body, filler); err != nil {
					errs <- fmt.Errorf("stream %d: %w", ids[i], err)
					return
				}
			}
			statuses, messages, err := f.wait(ids)
			if err != nil {
				errs <- err
				return
			}
			for _, id := range ids {
				if statuses[id] != strconv.Itoa(int(codes.PermissionDenied)) || !strings.Contains(messages[id], "analyst") {
					errs <- fmt.Errorf("stream %d: got status %s %q, want PermissionDenied naming the analyst", id, statuses[id], messages[id])
				}
			}
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sent := uint64(conns * perConn * (5 + size))
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d denied requests, %d MiB sent: the process allocated %.1f MiB, heap in use %.1f -> %.1f MiB",
		conns*perConn, sent>>20, float64(alloc)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
	// Generous: a tenth of what was sent. Reading and decoding each
	// request before refusing it allocates more than what was sent.
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > int64(sent/10) {
		t.Errorf("the heap in use grew by %d MiB during a flood of %d MiB, want at most a tenth", grew>>20, sent>>20)
	}
	if raceEnabled {
		return // sync.Pool drops buffers at random under the race detector
	}
	if alloc > sent/10 {
		t.Errorf("the flood made the process allocate %d MiB for %d MiB sent, want at most a tenth", alloc>>20, sent>>20)
	}
}

// TestAnAllowedOversizedRequestIsRefused sends, as the node's coordinator,
// an Aggregate request far larger than any valid one: the node refuses it
// RESOURCE_EXHAUSTED, naming the method's limit, before the handler sees it.
func TestAnAllowedOversizedRequestIsRefused(t *testing.T) {
	t.Parallel()
	tn := startNode(t, Policy{})
	client := fedreportv1.NewAggregationServiceClient(tn.dial(t, identity.Coordinator(td, "main")))
	_, err := client.Aggregate(callCtx(t), &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", RollupId: strings.Repeat("r", 256<<10), RollupStartedAt: rollupStarted})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "over the limit of 65536 bytes for Aggregate") {
		t.Errorf("message %q does not name the method's limit", msg)
	}
	var reason string
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != grpcsrv.ReasonRequestTooLarge {
		t.Errorf("reason %q, want %s", reason, grpcsrv.ReasonRequestTooLarge)
	}
	// A valid request on the same connection still works.
	if _, err := client.Aggregate(callCtx(t), &fedreportv1.AggregateRequest{RollupId: "r00000001", RollupStartedAt: rollupStarted, From: "2020-01-01", To: "2020-01-31"}); err != nil {
		t.Errorf("a valid request after the refusal: %v", err)
	}
}
