package main

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// TestMain lets the test binary run as the bench's child processes: a test
// that starts a coordinator child starts this binary again with `child`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
