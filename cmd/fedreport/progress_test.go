package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProgressRedrawsAtMostEveryQuarterSecond(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	p := newProgress(&out, 4000, func() time.Time { return now })
	send := func(from, n int, bytesRead int64) {
		for i := range n {
			p.update(uint64(from+i), bytesRead)
		}
	}
	// Within the first quarter second nothing is drawn: a short ingest
	// shows no progress at all.
	now = now.Add(200 * time.Millisecond)
	send(1, 1000, 100)
	if out.Len() != 0 {
		t.Fatalf("within 250ms of the start: drew %q", out.String())
	}
	// The clock is read every 256 records: the first read after 250ms redraws.
	now = now.Add(300 * time.Millisecond) // 0.5 s after the start
	send(1001, 100, 1000)
	want := "\r\x1b[K 25.0%  1024 records sent, 2048 records/s"
	if out.String() != want {
		t.Fatalf("first draw: got %q, want %q", out.String(), want)
	}
	send(1101, 1000, 2000) // the same instant: no redraw
	if out.String() != want {
		t.Fatalf("redrew within 250ms: %q", out.String())
	}
	now = now.Add(250 * time.Millisecond)
	send(2101, 256, 3000)
	last := out.String()[strings.LastIndex(out.String(), "\r"):]
	if want := "\r\x1b[K 75.0%  2304 records sent, 3072 records/s"; last != want {
		t.Errorf("redraw: got %q, want %q", last, want)
	}
	p.status("2356 records sent; the node is committing them")
	p.clear()
	if !strings.HasSuffix(out.String(), "committing them\r\x1b[K") {
		t.Errorf("status then clear: got %q", out.String())
	}
	p.clear() // nothing on the line: nothing to erase
	if strings.HasSuffix(out.String(), "\r\x1b[K\r\x1b[K") {
		t.Errorf("second clear wrote again: %q", out.String())
	}

	// Input of unknown size (a pipe): no percentage.
	out.Reset()
	p = newProgress(&out, -1, func() time.Time { return now })
	now = now.Add(time.Second)
	for i := range 256 {
		p.update(uint64(i+1), 100)
	}
	if got, want := out.String(), "\r\x1b[K256 records sent, 256 records/s"; got != want {
		t.Errorf("unknown size: got %q, want %q", got, want)
	}
	var none *progress // not a terminal
	none.update(1, 1)
	none.status("x")
	none.clear()
}

func TestIngestShowsProgressOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	var b strings.Builder
	b.WriteString(header)
	for i := range 3000 {
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-02,,,,1\n", i)
	}
	file := writeFile(t, "fr.csv", b.String())
	for _, terminal := range []bool{false, true} {
		var stdout, stderr bytes.Buffer
		o := ingestOptions{node: addr, progress: terminal}
		if err := runIngest(t.Context(), o, []string{file}, nil, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stdout.String(), "ingested 3000 records: ") {
			t.Errorf("terminal %v: summary %q", terminal, stdout.String())
		}
		switch got := stderr.String(); {
		case !terminal && got != "":
			t.Errorf("not a terminal: stderr %q, want nothing", got)
		case terminal && !strings.HasSuffix(got, "\r\x1b[K3000 records sent; the node is committing them\r\x1b[K"):
			// A quick ingest shows no progress line (a slow machine may
			// show one), then the wait for the commit, then erases it.
			t.Errorf("terminal: stderr %q, want the commit shown, then the line erased", got)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, tc := range map[string]struct {
		w    any
		want bool
	}{
		"a file": {f, false}, "a pipe": {w, false}, "a buffer": {&bytes.Buffer{}, false},
	} {
		if got := isTerminal(tc.w.(interface{ Write([]byte) (int, error) })); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
	// A pseudo-terminal, where one is available.
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Close()
	if !isTerminal(pty) {
		t.Errorf("a pseudo-terminal: got false, want true")
	}
}
