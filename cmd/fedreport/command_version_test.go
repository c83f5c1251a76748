package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionPrintsTheBuild runs `fedreport version` and --version through
// the root command: both name the Go version this test binary was built
// with, and -o json is what the table shows.
func TestVersionPrintsTheBuild(t *testing.T) {
	t.Parallel()
	out := mustRunCLI(t, "version")
	for _, want := range []string{"VERSION ", "REVISION ", "GO ", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out, want) {
			t.Errorf("version: want %q in:\n%s", want, out)
		}
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(mustRunCLI(t, "version", "-o", "json")), &b); err != nil || b.GoVersion != runtime.Version() || b.Version == "" {
		t.Errorf("version -o json: got %+v (%v), want the Go version %s and a version", b, err, runtime.Version())
	}
	if out := mustRunCLI(t, "--version"); !strings.HasPrefix(out, "fedreport "+b.Version) || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version: got %q, want fedreport %s ... %s", out, b.Version, runtime.Version())
	}
	if _, _, err := runCLI(t, t.Context(), "version", "-o", "csv"); err == nil || !strings.Contains(err.Error(), "want table, json or yaml") {
		t.Errorf("version -o csv: got %v, want a refusal naming the formats", err)
	}
}

// TestVersionGolden prints the build information of a tagged build from a
// modified checkout in every format.
func TestVersionGolden(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/isa-alliance/fedreport", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "6f7ac81d0c1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	b := buildInfoOf(bi, "dev")
	b.Platform = "linux/amd64"
	if got, want := b.Short(), "v1.4.0+6f7ac81d0c1e-modified"; got != want {
		t.Errorf("Short: got %q, want %q", got, want)
	}
	for _, format := range []string{"table", "json", "yaml"} {
		var out bytes.Buffer
		if err := printBuildInfo(&out, format, b); err != nil {
			t.Fatal(err)
		}
		golden(t, "version."+format, out.Bytes())
	}
}
