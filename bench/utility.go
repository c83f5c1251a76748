package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// measureUtility returns the demo's share of exact cells before and after
// the protected release, as a Markdown table. The demo's data and the
// measure are the test's (cmd/fedreport TestDemoReleaseUtility, which also
// checks that every member's totals stay exact): the bench runs it, as a
// developer would, and reads the table it writes.
func measureUtility(ctx context.Context, dir string) (string, error) {
	path := filepath.Join(dir, "utility.md")
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^TestDemoReleaseUtility$", "./cmd/fedreport")
	cmd.Env = append(os.Environ(), "FEDREPORT_UTILITY_TABLE="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -run TestDemoReleaseUtility ./cmd/fedreport: %w\n%s", err, out)
	}
	table, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the test wrote no table: %w", err)
	}
	return string(table), nil
}
