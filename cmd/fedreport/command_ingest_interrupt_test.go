package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/node"
)

// feedRecords writes n valid records to w, from FR-first on, after a
// header when first is 0. The ingest may have ended already, so a write
// error is the caller's to ignore.
func feedRecords(w io.Writer, first, n int) error {
	var b strings.Builder
	if first == 0 {
		b.WriteString(header)
	}
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-02,,,,1\n", i)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ingestFromPipe runs `fedreport ingest --format csv -` against addr with
// ctx, reading stdin from a pipe the test writes to, and returns the
// command's error on the channel.
func ingestFromPipe(ctx context.Context, addr string) (*io.PipeWriter, <-chan error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"ingest", "--node", addr, "--format", "csv", "-"}, pr, &out, &errOut)
		pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if ingest returned early
		done <- err
	}()
	return pw, done
}

// checkInterrupted checks that an interrupted ingest says nothing was stored
// and that running it again is safe, with no certificate hint on a socket.
func checkInterrupted(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("ingest succeeded, want it interrupted")
	}
	t.Log(err)
	for _, w := range []string{"stream interrupted before it was complete", "the node did not commit it and nothing of it was stored", "safe to run the same command again"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "--cacert") {
		t.Errorf("error %q hints at certificates on an admin socket", err)
	}
}

func TestIngestCancelledMidStreamSaysNothingWasStored(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	before := stats(t, n)
	ctx, cancel := context.WithCancel(t.Context())
	pw, done := ingestFromPipe(ctx, addr)
	if err := feedRecords(pw, 0, ingestBatch+1); err != nil { // one batch is sent
		t.Fatal(err)
	}
	cancel() // Ctrl-C
	feedRecords(pw, ingestBatch+1, 1)
	pw.Close()
	checkInterrupted(t, <-done)
	if after := stats(t, n); after.Records != before.Records || after.DataVersion != before.DataVersion {
		t.Errorf("something was stored: records %d -> %d, data version %d -> %d", before.Records, after.Records, before.DataVersion, after.DataVersion)
	}
}

func TestIngestCutOffByTheNodeStoppingSaysNothingWasStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n, err := node.Open(node.Config{Member: "FR", DataPath: filepath.Join(dir, "fr.db"), TrustDomain: "isa", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	sock := filepath.Join(dir, "fr.sock")
	lis, err := node.ListenAdminSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- n.Serve(serveCtx, nil, lis) }()

	pw, done := ingestFromPipe(t.Context(), "unix://"+sock)
	if err := feedRecords(pw, 0, ingestBatch+1); err != nil {
		t.Fatal(err)
	}
	// The node stops (SIGTERM): the running stream is cut off after the grace period.
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	// More records follow until the client gives up: stdin never ends
	// first, so the client always meets the cut-off while still sending,
	// as a long file does, and never reaches the end of its input before
	// it notices (then it could only say the commit's fate is unknown).
	go func() {
		for i := ingestBatch + 1; feedRecords(pw, i, ingestBatch) == nil; i += ingestBatch {
		}
	}()
	checkInterrupted(t, <-done)
	pw.Close()
	if st := stats(t, n); st.Records != 0 {
		t.Errorf("%d records were stored, want none", st.Records)
	}
}

func TestIngestToASocketNobodyServesHintsAtTheNodeNotCertificates(t *testing.T) {
	t.Parallel()
	sock := writeFile(t, "stale.sock", "") // left behind by a node that is gone
	_, _, err := runCLI(t, t.Context(), "ingest", "--node", "unix://"+sock, writeFile(t, "a.csv", header+"FR-1,arrests,2020-01-02,,,,1\n"))
	if err == nil {
		t.Fatal("ingest succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "is the node running with --admin-socket") || strings.Contains(err.Error(), "--cacert") {
		t.Errorf("got %q, want the socket hint and no certificate hint", err)
	}
}
