package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// releaseNode is a member node that advertises a protected release: the
// operation's phases as periods and two published tables. It counts the
// Aggregate calls it gets and answers each with one exact cell.
type releaseNode struct {
	fedreportv1.UnimplementedAggregationServiceServer
	code  string
	asked atomic.Int32
}

func (n *releaseNode) DescribeNode(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	return &fedreportv1.DescribeNodeResponse{Member: n.code, Kind: "node", SoftwareVersion: "release-test", Policy: &fedreportv1.Policy{
		MinCellCount: 5,
		Periods: []*fedreportv1.Period{
			{Name: "phase-1", From: "2020-01-01", To: "2020-05-30"},
			{Name: "phase-2", From: "2020-06-01", To: "2020-09-30"},
		},
		Tables: []*fedreportv1.Table{
			{Dimensions: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_OFFENCE}},
			{Dimensions: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_CHANNEL}},
		},
	}}, nil
}

func (n *releaseNode) Aggregate(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	n.asked.Add(1)
	return &fedreportv1.AggregateResponse{Member: n.code, MinCellCount: 5, ReleaseVersion: 1, Cells: []*fedreportv1.Cell{
		{Metric: fedreportv1.Metric_METRIC_ARRESTS, Count: 40, LowerBound: 40, UpperBound: 40},
	}}, nil
}

// serveReleaseNode serves n over mTLS with the node certificate of n.code
// from pkiDir until the test ends, and returns its address.
func serveReleaseNode(t *testing.T, pkiDir string, n *releaseNode) string {
	t.Helper()
	base := filepath.Join(pkiDir, "node-"+n.code)
	src, err := mtls.NewFiles(filepath.Join(pkiDir, "ca.crt"), base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(src))))
	fedreportv1.RegisterAggregationServiceServer(srv, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestRollupSaysWhichMemberRefusesAWindowAndWhatItAccepts runs `fedreport
// rollup` for a window a day short of March against a coordinator whose
// member FR publishes the operation's phases and whole months: the command
// fails naming FR, the reason and the nearest windows FR accepts, and FR
// was never asked; the window it suggests then runs.
func TestRollupSaysWhichMemberRefusesAWindowAndWhatItAccepts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"},
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	fr := &releaseNode{code: "FR"}
	frAddr := serveReleaseNode(t, pkiDir, fr)
	addr := freeAddr(t)
	serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		"coordinator", "--data", filepath.Join(dir, "coord.db"), "--listen", addr, "--member", "FR="+frAddr,
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
	op := []string{"--coordinator", addr, "--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key")}

	_, _, err := runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-03-01", "--to", "2020-03-30", "--metrics", "arrests"}, op...)...)
	if err == nil {
		t.Fatal("rollup of 2020-03-01..2020-03-30: got no error, want a refusal")
	}
	for _, want := range []string{"member FR cannot answer", "window 2020-03-01..2020-03-30", "nearest allowed: 2020-03-01..2020-03-31", "[PERIOD_NOT_ALIGNED]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q:\n%v", want, err)
		}
	}
	if got := fr.asked.Load(); got != 0 {
		t.Errorf("FR was asked %d times, want never", got)
	}

	_, _, err = runCLI(t, t.Context(), append([]string{"rollup", "--from", "2020-01-01", "--to", "2020-09-30", "--by", "offence,channel"}, op...)...)
	for _, want := range []string{"member FR cannot answer", "no table by offence,channel", "[TABLE_NOT_PUBLISHED]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rollup by offence,channel: refusal does not say %q:\n%v", want, err)
		}
	}

	out := mustRunCLI(t, append([]string{"rollup", "--from", "2020-03-01", "--to", "2020-03-31", "--metrics", "arrests"}, op...)...)
	if !strings.Contains(out, "40") || fr.asked.Load() != 1 {
		t.Errorf("the suggested window: FR asked %d times, output:\n%s", fr.asked.Load(), out)
	}
}
