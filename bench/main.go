// Command bench measures fedreport against what a ministry would otherwise
// use, a PostgreSQL 15 database, side by side in one run on one machine
// (issue 6): ingest rate, the node's Aggregate latency against PostgreSQL's
// indexed GROUP BY, 200-member rollups (also with one hung member),
// GetRollup throughput against a trivial RPC, and the coordinator's memory.
//
//	go run ./bench [--records 1000000] [--json] [--cpuprofile cpu]
//	go run ./bench --records 10000000 --write BENCHMARKS.md   # the benchmark page
//
// The member node of the ingest and Aggregate steps, and the coordinator,
// run in child processes (this program started again), so that each role's
// RSS and CPU profile is its own. PostgreSQL is started in a temporary
// directory and stopped at the end; --skip-postgres leaves it out.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run is the whole program; `child` runs one role for a parent (child.go).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "child" {
		return runChild(ctx, args[1:], stdin, stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if o == nil {
		return nil // --help
	}
	return runBench(ctx, *o, args, stdout, stderr)
}
