package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// TestNodeMetricsSayWhatAnOperatorWatches runs `fedreport node` with
// --metrics-listen and an admin socket: /healthz and /readyz answer, the
// certificate's expiry and the build are exported, and an ingest that
// commits and one that fails move the stream counters, the data version
// and the last write time.
func TestNodeMetricsSayWhatAnOperatorWatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "node", "--member", "FR"}, []string{"--role", "member-admin", "--member", "FR", "--name", "ops"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr, metricsAddr, sock := freeAddr(t), freeAddr(t), filepath.Join(dir, "fr.sock")
	serveCLI(t, pkiDir, addr, identity.MemberAdmin("isa", "FR", "ops"), identity.Node("isa", "FR"),
		"node", "--member", "FR", "--data", filepath.Join(dir, "fr.db"), "--listen", addr, "--metrics-listen", metricsAddr, "--admin-socket", sock,
		"--cacert", p("ca.crt"), "--cert", p("node-FR.crt"), "--key", p("node-FR.key"))

	for _, path := range []string{"/healthz", "/readyz"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s of a serving node: got %d, want 200", path, resp.StatusCode)
		}
	}
	// pki issue makes certificates valid for a year.
	if got := scrape(t, metricsAddr, `fedreport_tls_certificate_expiry_seconds{listener="main"}`); got < 300*24*3600 || got > 367*24*3600 {
		t.Errorf("certificate expiry: got %v s, want about a year", got)
	}
	if got := scrape(t, metricsAddr, `fedreport_node_data_version`); got != 0 {
		t.Errorf("data version of a new node: got %v, want 0", got)
	}

	before := time.Now()
	mustRunCLI(t, "ingest", "--node", "unix://"+sock, writeFile(t, "fr.csv", header+"FR-1,arrests,2020-01-02,,,,1\n"))
	if _, _, err := runCLI(t, t.Context(), "ingest", "--node", "unix://"+sock, writeFile(t, "dup.csv", header+"FR-2,arrests,2020-01-02,,,,1\nFR-2,arrests,2020-01-03,,,,1\n")); err == nil {
		t.Fatal("an ingest with a duplicate succeeded")
	}
	for series, want := range map[string]float64{
		`fedreport_node_ingest_streams_total{outcome="committed"}`: 1,
		`fedreport_node_ingest_streams_total{outcome="failed"}`:    1,
		`fedreport_node_data_version`:                              1,
	} {
		if got := scrape(t, metricsAddr, series); got != want {
			t.Errorf("%s: got %v, want %v", series, got, want)
		}
	}
	if got := scrape(t, metricsAddr, `fedreport_node_last_write_timestamp_seconds`); got < float64(before.Unix()-1) || got > float64(time.Now().Unix()+1) {
		t.Errorf("last write: got %v, want the ingest's time, about %d", got, before.Unix())
	}
	if got := scrapeLine(t, metricsAddr, "fedreport_build_info{"); !strings.HasSuffix(got, " 1") {
		t.Errorf("build info: got %q, want a series of value 1", got)
	}
}

// TestCoordinatorMetricsListenerProbesAndCertificate runs `fedreport
// coordinator` with --metrics-listen: /healthz and /readyz answer, and its
// certificate's expiry and the build are exported.
func TestCoordinatorMetricsListenerProbesAndCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		"coordinator", "--data", filepath.Join(dir, "coord.db"), "--listen", addr, "--metrics-listen", metricsAddr, "--member", "FR=127.0.0.1:7443",
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
	for _, path := range []string{"/healthz", "/readyz"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s of a serving coordinator: got %d, want 200", path, resp.StatusCode)
		}
	}
	if got := scrape(t, metricsAddr, `fedreport_tls_certificate_expiry_seconds{listener="main"}`); got < 300*24*3600 {
		t.Errorf("certificate expiry: got %v s, want about a year", got)
	}
	if got := scrapeLine(t, metricsAddr, "fedreport_build_info{"); !strings.HasSuffix(got, " 1") {
		t.Errorf("build info: got %q, want a series of value 1", got)
	}
}
