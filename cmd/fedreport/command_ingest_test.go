package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// localNode runs a real node with a bbolt file and an admin socket in a
// temp dir until the test ends, with limits if given; the CLI reaches it as
// unix://<socket>.
func localNode(t *testing.T, limits ...grpcsrv.Limits) (*node.Node, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := node.Config{Member: "FR", DataPath: filepath.Join(dir, "fr.db"), TrustDomain: "isa", Version: "test"}
	if len(limits) > 0 {
		cfg.Limits = limits[0]
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "fr.sock")
	lis, err := node.ListenAdminSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, nil, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n, "unix://" + sock
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func stats(t *testing.T, n *node.Node) node.Stats {
	t.Helper()
	st, err := n.Store().Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const header = "record_id,metric,date,offence,channel,victim_age,quantity\n"

func TestIngestRefusesEachInvalidFileWhole(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	mustRunCLI(t, "ingest", "--node", addr, writeFile(t, "base.csv", header+"FR-1,arrests,2020-01-02,grooming,app,,1\n"))
	before := stats(t, n)

	good := "FR-2,arrests,2020-02-03,,,,1\n" // every bad file starts with a good line: nothing of it may be stored
	for _, tc := range []struct {
		name, file, content string
		want                []string
	}{
		{"record_id with a space", "a.csv", header + good + "FR 3,arrests,2020-01-01,,,,1\n", []string{"a.csv:3:", "record_id", "A-Za-z0-9._:-"}},
		{"record_id too long", "a.csv", header + good + strings.Repeat("x", 129) + ",arrests,2020-01-01,,,,1\n", []string{"a.csv:3:", "record_id", "128"}},
		{"empty record_id", "a.csv", header + good + ",arrests,2020-01-01,,,,1\n", []string{"a.csv:3:", "record_id"}},
		{"unknown metric", "a.csv", header + good + "FR-3,arrest,2020-01-01,,,,1\n", []string{"a.csv:3:", `metric "arrest"`, "arrests, victims_identified"}},
		{"date not YYYY-MM-DD", "a.csv", header + good + "FR-3,arrests,01/02/2020,,,,1\n", []string{"a.csv:3:", "date", "YYYY-MM-DD"}},
		{"date in the future", "a.csv", header + good + "FR-3,arrests,2999-01-01,,,,1\n", []string{"a.csv:3:", "date", "future"}},
		{"date before 2000", "a.csv", header + good + "FR-3,arrests,1999-12-31,,,,1\n", []string{"a.csv:3:", "date", "2000-01-01"}},
		{"unknown offence", "a.csv", header + good + "FR-3,arrests,2020-01-01,fraud,,,1\n", []string{"a.csv:3:", `offence "fraud"`, "grooming"}},
		{"unknown channel", "a.csv", header + good + "FR-3,arrests,2020-01-01,,tv,,1\n", []string{"a.csv:3:", `channel "tv"`, "messaging"}},
		{"victim_age on arrests", "a.csv", header + good + "FR-3,arrests,2020-01-01,,,6-11,1\n", []string{"a.csv:3:", "victim_age", "victims_identified"}},
		{"unknown victim_age", "a.csv", header + good + "FR-3,victims_identified,2020-01-01,,,7-9,1\n", []string{"a.csv:3:", `victim_age "7-9"`, "12-14"}},
		{"quantity 0", "a.csv", header + good + "FR-3,arrests,2020-01-01,,,,0\n", []string{"a.csv:3:", "quantity", "1 to 1000000"}},
		{"quantity too large", "a.csv", header + good + "FR-3,arrests,2020-01-01,,,,1000001\n", []string{"a.csv:3:", "quantity"}},
		{"quantity not a number", "a.csv", header + good + "FR-3,arrests,2020-01-01,,,,ten\n", []string{"a.csv:3:", "quantity"}},
		{"unknown column", "a.csv", "record_id,metric,date,name\nFR-3,arrests,2020-01-01,x\n", []string{"a.csv:1:", `unknown column "name"`}},
		{"missing date column", "a.csv", "record_id,metric\nFR-3,arrests\n", []string{"a.csv:1:", "date"}},
		{"wrong number of fields", "a.csv", header + good + "FR-3,arrests\n", []string{"a.csv:3:"}},
		{"duplicate record_id in one stream", "a.csv", header + good + "FR-2,arrests,2020-02-04,,,,1\n", []string{"a.csv:3:", `record_id "FR-2" was already sent in this stream, at `, "a.csv:2\n", "(send each record once"}},
		{"malformed JSON line", "a.jsonl", `{"record_id":"FR-2","metric":"arrests","date":"2020-01-01"}` + "\n{not json\n", []string{"a.jsonl:2:"}},
		{"quantity as a JSON string", "a.jsonl", `{"record_id":"FR-2","metric":"arrests","date":"2020-01-01","quantity":"3"}` + "\n", []string{"a.jsonl:1:", "quantity", "got a string"}},
		{"repeated JSON key", "a.jsonl", `{"record_id":"FR-2","metric":"arrests","date":"2020-01-01"}` + "\n" + `{"record_id":"J-6","record_id":"J-7","metric":"arrests","date":"2020-01-01"}` + "\n", []string{"a.jsonl:2:", `key "record_id" appears twice`}},
		{"unknown JSON field", "a.jsonl", `{"record_id":"FR-2","metric":"arrests","date":"2020-01-01","name":"x"}` + "\n", []string{"a.jsonl:1:", "name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, writeFile(t, tc.file, tc.content))
			if err == nil {
				t.Fatal("ingest succeeded, want a refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if after := stats(t, n); after.Records != before.Records || after.DataVersion != before.DataVersion {
				t.Errorf("something was stored: records %d -> %d, data version %d -> %d", before.Records, after.Records, before.DataVersion, after.DataVersion)
			}
		})
	}
}

func TestIngestListsTwentyErrorsThenCounts(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	var b strings.Builder
	b.WriteString(header)
	for i := range 25 {
		b.WriteString("FR-" + strings.Repeat("9", i+1) + ",arrest,2020-01-01,,,,1\n")
	}
	_, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, writeFile(t, "many.csv", b.String()))
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	if got := strings.Count(msg, "many.csv:"); got != 20 {
		t.Errorf("listed %d errors, want 20:\n%s", got, msg)
	}
	if !strings.Contains(msg, "and 5 more") || !strings.Contains(msg, "25 invalid line(s); nothing was stored") {
		t.Errorf("missing the count:\n%s", msg)
	}
}

func TestIngestIsIdempotentAndCorrects(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	file := writeFile(t, "fr.csv", header+
		"FR-1,arrests,2020-01-02,grooming,app,,1\n"+
		"FR-2,victims_identified,2020-01-03,grooming,app,6-11,2\n"+
		"FR-3,sites_blocked,2020-01-04,,website,,3\n")
	if out := mustRunCLI(t, "ingest", "--node", addr, file); !strings.Contains(out, "3 new, 0 changed, 0 unchanged; data version 1") {
		t.Errorf("first ingest: %s", out)
	}
	if out := mustRunCLI(t, "ingest", "--node", addr, file); !strings.Contains(out, "0 new, 0 changed, 3 unchanged; data version 1") {
		t.Errorf("second ingest of the same file: %s", out)
	}
	// From stdin, as JSON Lines: FR-3 corrected, FR-4 new.
	jsonl := `{"record_id":"FR-3","metric":"sites_blocked","date":"2020-01-04","channel":"website","quantity":5}` + "\n" +
		`{"record_id":"FR-4","metric":"arrests","date":"2020-02-01"}` + "\n"
	var out strings.Builder
	if err := run(t.Context(), []string{"ingest", "--node", addr, "--format", "jsonl", "-"}, strings.NewReader(jsonl), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 new, 1 changed, 0 unchanged; data version 2") {
		t.Errorf("correction: %s", out.String())
	}
	if rep, err := n.Verify(); err != nil || !rep.OK() {
		t.Fatalf("counters differ from records after a correction: %v %v", rep, err)
	}

	// Retract: an unknown id is named and nothing is removed.
	_, _, err := runCLI(t, t.Context(), "retract", "--node", addr, "FR-1", "FR-404", "FR-405")
	if err == nil || strings.Count(err.Error(), "FR-404") != 1 || strings.Count(err.Error(), "FR-405") != 1 {
		t.Fatalf("retract with unknown ids: got %v, want both named once", err)
	}
	if st := stats(t, n); st.Records != 4 || st.DataVersion != 2 {
		t.Fatalf("a refused retract changed the store: %+v", st)
	}
	if out := mustRunCLI(t, "retract", "--node", addr, "FR-1", "FR-4"); !strings.Contains(out, "retracted 2 records; data version 3") {
		t.Errorf("retract: %s", out)
	}
	if rep, err := n.Verify(); err != nil || !rep.OK() {
		t.Fatalf("counters differ from records after a retract: %v %v", rep, err)
	}
}

func TestIngestNamesBothLinesOfADuplicateAcrossFiles(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	// The duplicate is far apart: other messages of the stream, other
	// batches of the node, another file.
	var b strings.Builder
	b.WriteString(header)
	for i := 1; i <= 10000; i++ {
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-02,,,,1\n", i)
	}
	first := writeFile(t, "first.csv", b.String())
	second := writeFile(t, "second.jsonl", `{"record_id":"FR-20001","metric":"arrests","date":"2020-01-01"}`+"\n\n"+
		`{"record_id":"FR-5000","metric":"sites_blocked","date":"2020-01-01"}`+"\n")
	_, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, first, second)
	want := second + `:3: record_id "FR-5000" was already sent in this stream, at ` + first + ":5001\n1 duplicate record_id(s) (send each record once; a later ingest may correct it)"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "nothing was stored") {
		t.Fatalf("got %v, want %q and nothing stored", err, want)
	}
	if st := stats(t, n); st.Records != 0 || st.DataVersion != 0 {
		t.Errorf("something was stored: %+v", st)
	}
	// Refused while the file is still being sent: the node checks each of
	// its batches as it arrives.
	b.Reset()
	b.WriteString(header)
	for i := 1; i <= 100000; i++ {
		id := i
		if i == 9000 {
			id = 5
		}
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-02,,,,1\n", id)
	}
	long := writeFile(t, "long.csv", b.String())
	_, _, err = runCLI(t, t.Context(), "ingest", "--node", addr, long)
	want = long + `:9001: record_id "FR-5" was already sent in this stream, at ` + long + ":6\n"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("duplicate in a long file: got %v, want %q", err, want)
	}

	// From stdin the file cannot be read again: the node's words, which
	// still name the record_id and the record's number.
	var out strings.Builder
	err = run(t.Context(), []string{"ingest", "--node", addr, "--format", "csv", "-"},
		strings.NewReader(header+"FR-1,arrests,2020-01-02,,,,1\nFR-2,arrests,2020-01-02,,,,1\nFR-1,arrests,2020-01-03,,,,1\n"), &out, &out)
	if err == nil || !strings.Contains(err.Error(), `record 3 of stdin: record_id "FR-1" was already sent`) {
		t.Errorf("duplicate on stdin: got %v", err)
	}
}

// TestIngestAndRetractSayOneRecord checks the summaries of one record: in
// the singular, and without a rate when the record waited long enough (here
// behind another ingest) for its rate to round to 0 records/s.
func TestIngestAndRetractSayOneRecord(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	if out := mustRunCLI(t, "ingest", "--node", addr, writeFile(t, "fr.csv", header+"FR-1,arrests,2020-01-02,grooming,app,,1\n")); !strings.HasPrefix(out, "ingested 1 record: 1 new, ") {
		t.Errorf("ingest of one record: got %q, want it to start %q", out, "ingested 1 record: 1 new, ")
	}
	if out := mustRunCLI(t, "retract", "--node", addr, "FR-1"); out != "retracted 1 record; data version 2\n" {
		t.Errorf("retract of one record: got %q", out)
	}
	waited := ingestSummary(&fedreportv1.IngestRecordsResponse{Received: 1, Added: 1, DataVersion: 3}, 3629*time.Millisecond)
	if want := "ingested 1 record: 1 new, 0 changed, 0 unchanged; data version 3 (3.629s)"; waited != want {
		t.Errorf("one record after 3.629s: got %q, want %q", waited, want)
	}
	fast := ingestSummary(&fedreportv1.IngestRecordsResponse{Received: 3000, Added: 3000, DataVersion: 1}, 2*time.Second)
	if want := "ingested 3000 records: 3000 new, 0 changed, 0 unchanged; data version 1 (2s, 1500 records/s)"; fast != want {
		t.Errorf("3000 records in 2s: got %q, want %q", fast, want)
	}
}

// TestAnIngestWaitingForTheWriteLockSaysWhoHoldsIt holds the node's write
// lock with an ingest stream that goes silent, on the admin socket, and
// runs `fedreport ingest`: it says at once who holds the lock since when,
// and goes on when the node, after its idle timeout, has rolled the silent
// stream back.
func TestAnIngestWaitingForTheWriteLockSaysWhoHoldsIt(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t, grpcsrv.Limits{IngestIdleTimeout: 300 * time.Millisecond})
	sock := strings.TrimPrefix(addr, "unix://")

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	silent, err := fedreportv1.NewNodeAdminServiceClient(conn).IngestRecords(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := silent.Send(&fedreportv1.IngestRecordsRequest{Records: []*fedreportv1.Record{{RecordId: "S-1", Metric: fedreportv1.Metric_METRIC_ARRESTS, Date: "2020-01-01"}}}); err != nil {
		t.Fatal(err)
	}
	if md, err := silent.Header(); err != nil || len(md.Get(node.HeaderWriteLockAcquired)) != 1 {
		t.Fatalf("silent stream's header: got %v, %v; want the lock acquired", md, err)
	}

	out, errOut, err := runCLI(t, t.Context(), "ingest", "--node", "unix://"+sock, writeFile(t, "fr.csv", header+"FR-1,arrests,2020-01-02,grooming,app,,1\n"))
	if err != nil {
		t.Fatalf("ingest: %v\n%s", err, errOut)
	}
	if want := "waiting: the node's write lock is held by local-admin since "; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q does not contain %q", errOut, want)
	}
	if !strings.HasPrefix(out, "ingested 1 record: 1 new") {
		t.Errorf("stdout %q, want 1 new record", out)
	}
	if st := stats(t, n); st.Records != 1 {
		t.Errorf("%d records stored, want 1 (the silent stream's rolled back)", st.Records)
	}
}

func TestIngestRefusesAnOverlongLineBriefly(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	good := "FR-1,arrests,2020-01-02,,,,1\n"
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"a CSV line of 1 MB", "a.csv", header + good + "FR-2," + strings.Repeat("x", 1<<20) + "\n" + good, "a.csv:3: line is longer than 65536 bytes"},
		{"a CSV header of 1 MB", "a.csv", "record_id," + strings.Repeat("x", 1<<20) + "\n" + good, "a.csv:1: line is longer than 65536 bytes"},
		{"an unclosed CSV quote", "a.csv", header + good + "FR-2,\"arrests,2020-01-02,,,,1\n" + strings.Repeat(good, 3000), "a.csv:3: the quoted field that starts on this line is not closed within 65536 bytes"},
		{"a JSON Lines line of 1 MB", "a.jsonl", `{"record_id":"` + strings.Repeat("x", 1<<20) + `"}` + "\n", "a.jsonl:1: line is longer than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, writeFile(t, tc.file, tc.content))
			if err == nil {
				t.Fatal("ingest succeeded, want a refusal")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || len(msg) > 1024 {
				t.Errorf("error (%d bytes): got %.300q, want one under 1 KiB containing %q", len(msg), msg, tc.want)
			}
		})
	}
	if st := stats(t, n); st.Records != 0 {
		t.Errorf("records: got %d, want 0", st.Records)
	}
}

func TestRetractFileWithAnOverlongLineNamesIt(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	ids := writeFile(t, "ids.txt", "# retractions\nFR-1\n"+strings.Repeat("x", 100<<10)+"\nFR-2\n")
	_, _, err := runCLI(t, t.Context(), "retract", "--node", addr, "--file", ids)
	want := ids + ":3: line is longer than 65536 bytes"
	if err == nil || !strings.HasPrefix(err.Error(), want) || len(err.Error()) > 1024 {
		t.Errorf("retract: got %v, want an error under 1 KiB starting %q", err, want)
	}
}

func TestIngestRefusesAnEmptyFileOfEitherFormat(t *testing.T) {
	t.Parallel()
	_, addr := localNode(t)
	for _, tc := range []struct{ name, file, content string }{
		{"an empty CSV file", "a.csv", ""},
		{"an empty JSON Lines file", "a.jsonl", ""},
		{"a JSON Lines file of blank lines", "a.jsonl", "\n  \n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, writeFile(t, tc.file, tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.file+":1: file is empty (want ") || !strings.Contains(err.Error(), "nothing was stored") {
				t.Errorf("ingest: got %q, %v; want an error naming %s:1 saying the file is empty", out, err, tc.file)
			}
		})
	}
}

func TestIngestListsEveryDuplicateUpToTwentyThenCounts(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	var b strings.Builder
	b.WriteString(header)
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-02,,,,1\n", i)
	}
	for i := 1; i <= 25; i++ { // every one a duplicate of a line far above
		fmt.Fprintf(&b, "FR-%d,arrests,2020-01-03,,,,1\n", i*100)
	}
	file := writeFile(t, "dups.csv", b.String())
	_, _, err := runCLI(t, t.Context(), "ingest", "--node", addr, file)
	if err == nil {
		t.Fatal("ingest succeeded, want a refusal")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 22 {
		t.Fatalf("got %d lines, want 20 duplicates, a count of the rest and a summary:\n%s", len(lines), err)
	}
	for i, line := range lines[:20] {
		want := fmt.Sprintf(`%s:%d: record_id "FR-%d" was already sent in this stream, at %s:%d`, file, 5002+i, (i+1)*100, file, (i+1)*100+1)
		if line != want {
			t.Errorf("line %d: got %q, want %q", i+1, line, want)
		}
	}
	if lines[20] != "... and 5 more" || !strings.HasPrefix(lines[21], "25 duplicate record_id(s)") || !strings.Contains(lines[21], "nothing was stored") {
		t.Errorf("last lines: got %q, want the 5 more and a summary of 25", lines[20:])
	}
	if st := stats(t, n); st.Records != 0 {
		t.Errorf("records: got %d, want 0", st.Records)
	}
}

// TestIngestCheckValidatesWithoutANode checks files with ingest --check and
// no node at all: a clean file passes; a file with 30 invalid lines and a
// duplicate fails (exit 1) listing 20 problems, and --errors-file holds all
// 31, one a line.
func TestIngestCheckValidatesWithoutANode(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.csv", header+"FR-1,arrests,2020-01-02,,,,1\nFR-2,arrests,2020-01-03,,,,1\n")
	out := mustRunCLI(t, "ingest", "--check", good)
	if want := "checked 2 records in 1 file: no problems; nothing was sent\n"; out != want {
		t.Errorf("check of a good file: got %q, want %q", out, want)
	}

	var b strings.Builder
	b.WriteString(header + "FR-1,arrests,2020-01-02,,,,1\n")
	for i := range 30 {
		fmt.Fprintf(&b, "FR-x%d,arrest,2020-01-02,,,,1\n", i)
	}
	b.WriteString("FR-1,arrests,2020-01-05,,,,1\n")
	bad := writeFile(t, "bad.csv", b.String())
	errorsFile := filepath.Join(t.TempDir(), "errors.txt")
	_, _, err := runCLI(t, t.Context(), "ingest", "--check", "--errors-file", errorsFile, bad)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "\n... and 11 more\n31 problem(s) in 1 file checked (all of them in "+errorsFile+"); nothing was sent") {
		t.Errorf("check of a bad file: got exit %d, %v; want 1, 20 problems listed and 11 more", exitCode(err), err)
	}
	all, rerr := os.ReadFile(errorsFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) != 31 || !strings.HasPrefix(lines[0], bad+":3: metric \"arrest\"") ||
		lines[30] != bad+`:33: record_id "FR-1" appears again, first at `+bad+":2 (one ingest carries each record_id once)" {
		t.Errorf("--errors-file: got %d lines, first %q, last %q; want 31, the invalid lines, then the duplicate", len(lines), lines[0], lines[len(lines)-1])
	}
	if _, _, err := runCLI(t, t.Context(), "ingest", "--node", "unix:///nonexistent.sock", "--errors-file", errorsFile, good); err == nil || !strings.Contains(err.Error(), "--errors-file goes with --check") {
		t.Errorf("--errors-file without --check: got %v", err)
	}
}

// TestRetractIgnoreMissingSkipsWhatTheNodeDoesNotHold retracts a list with
// ids the node never held: refused whole without --ignore-missing; with it,
// the held ones go and the others are counted; a second run changes
// nothing and does not move the data version.
func TestRetractIgnoreMissingSkipsWhatTheNodeDoesNotHold(t *testing.T) {
	t.Parallel()
	n, addr := localNode(t)
	mustRunCLI(t, "ingest", "--node", addr, writeFile(t, "fr.csv", header+"FR-1,arrests,2020-01-02,,,,1\nFR-2,arrests,2020-01-02,,,,1\nFR-3,arrests,2020-01-02,,,,1\n"))
	if _, _, err := runCLI(t, t.Context(), "retract", "--node", addr, "FR-1", "FR-9"); err == nil {
		t.Fatal("retract of an unknown id without --ignore-missing succeeded")
	}
	out := mustRunCLI(t, "retract", "--node", addr, "--ignore-missing", "FR-1", "FR-9", "FR-2", "FR-8")
	if want := "retracted 2 records (2 of the ids not stored, skipped); data version 2\n"; out != want {
		t.Errorf("retract --ignore-missing: got %q, want %q", out, want)
	}
	out = mustRunCLI(t, "retract", "--node", addr, "--ignore-missing", "FR-1", "FR-9")
	if want := "retracted 0 records (2 of the ids not stored, skipped); data version 2\n"; out != want {
		t.Errorf("retract --ignore-missing again: got %q, want %q", out, want)
	}
	if st := stats(t, n); st.Records != 1 || st.DataVersion != 2 {
		t.Errorf("after the retractions: got %d records, data version %d; want 1 and 2", st.Records, st.DataVersion)
	}
}
