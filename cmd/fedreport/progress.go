package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// isTerminal reports whether w is a terminal (a character device), where a
// progress line may redraw itself. A file or a pipe gets no progress: logs
// and scripts see only the summary.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressEvery is the shortest time between two redraws of the progress line.
const progressEvery = 250 * time.Millisecond

// progress draws one line on a terminal that a long ingest redraws in place:
// records sent, records/s and, when the size of the input is known, the
// percentage of its bytes read. A nil *progress draws nothing.
type progress struct {
	w     io.Writer
	total int64 // bytes of all inputs; negative when unknown
	now   func() time.Time
	start time.Time
	last  time.Time // of the last redraw
	calls uint64
	drawn bool // a line is on the terminal
}

func newProgress(w io.Writer, total int64, now func() time.Time) *progress {
	start := now()
	return &progress{w: w, total: total, now: now, start: start, last: start}
}

// update redraws the line if progressEvery has passed since the start or the
// last redraw (a short ingest shows none). It is called for every record, so
// it reads the clock only every 256 calls.
func (p *progress) update(records uint64, bytesRead int64) {
	if p == nil {
		return
	}
	p.calls++
	if p.calls%256 != 0 {
		return
	}
	now := p.now()
	if now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	line := fmt.Sprintf("%d records sent", records)
	if secs := now.Sub(p.start).Seconds(); secs > 0 {
		line += fmt.Sprintf(", %.0f records/s", float64(records)/secs)
	}
	if p.total > 0 {
		line = fmt.Sprintf("%5.1f%%  ", min(100, 100*float64(bytesRead)/float64(p.total))) + line
	}
	p.draw(line)
}

// status replaces the line with a message, such as what the ingest waits for.
func (p *progress) status(msg string) {
	if p == nil {
		return
	}
	p.draw(msg)
}

// clear erases the line, before the summary or an error is printed.
func (p *progress) clear() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.drawn = false
}

func (p *progress) draw(line string) {
	// Carriage return, erase to the end of the line, the new text.
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	p.drawn = true
}
