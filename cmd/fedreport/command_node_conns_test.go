package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// scrape returns the value of the series line (name and labels, as the
// Prometheus text format writes them) of the /metrics at addr, or -1 when
// the page has no such line.
func scrape(t *testing.T, addr, series string) float64 {
	t.Helper()
	line := scrapeLine(t, addr, series+" ")
	if line == "" {
		return -1
	}
	f, err := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return f
}

// scrapeLine returns the first line of addr's /metrics that starts with
// prefix, or "".
func scrapeLine(t *testing.T, addr, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text()
		}
	}
	return ""
}

// TestANodeShedsAFloodOfIdleConnections runs `fedreport node` with
// --max-connections-per-source 16 and --metrics-listen, connects a member
// admin's client, then opens 120 idle TCP connections from the same
// address: the node closes the 105 past the cap as it accepts them, its
// /metrics counts them, and the connected client's health check answers.
func TestANodeShedsAFloodOfIdleConnections(t *testing.T) {
	t.Parallel()
	const flood, perSource = 120, 16
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	conn := serveCLI(t, pkiDir, addr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
		"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", addr, "--metrics-listen", metricsAddr,
		"--max-connections-per-source", strconv.Itoa(perSource),
		"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"))
	const series = `fedreport_node_grpc_server_connections_refused_total{cap="source"}`
	if got := scrape(t, metricsAddr, series); got != 0 {
		t.Fatalf("%s before the flood: got %v, want 0", series, got)
	}

	var d net.Dialer
	for range flood {
		// A connection past the cap may be reset before the dial returns.
		if c, err := d.DialContext(t.Context(), "tcp", addr); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	want := float64(flood - (perSource - 1)) // the client holds one place
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for scrape(t, metricsAddr, series) < want && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if got := scrape(t, metricsAddr, series); got != want {
		t.Errorf("%s after %d connections: got %v, want %v", series, flood, got, want)
	}
	hctx, hcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer hcancel()
	start := time.Now()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("the connected client's health check during the flood: %v", err)
	}
	t.Logf("health check during a flood of %d idle connections: %v", flood, time.Since(start))
}
