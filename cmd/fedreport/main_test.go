package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs the fedreport root command as a user would and returns what it printed.
func runCLI(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(ctx, args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustRunCLI is runCLI that fails the test on an error.
func mustRunCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, t.Context(), args...)
	if err != nil {
		t.Fatalf("fedreport %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}
