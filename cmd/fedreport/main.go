// Command fedreport runs every part of the fedreport federation: member
// nodes, the coordinator, and the client verbs operators, analysts and
// member administrators use.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fedreport:", err)
		os.Exit(exitCode(err))
	}
}
