package main

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// TestFiveOperatorsRollupsTogetherAllComplete runs two nodes and a
// coordinator through the root command with their default limits (a node
// grants each caller identity 5 Aggregate calls a second in bursts of 60),
// then has seven operators run `fedreport rollup` ten times each, the
// operators at once and each operator's rollups one after the other (every
// rollup a connection of its own: 70 at once would pass the coordinator's
// cap of 64 connections from one address): 70 rollups that each ask every
// node as the one coordinator identity, 10 more than a node's burst. Every
// one exits 0, which `fedreport rollup` does only for a complete rollup.
func TestFiveOperatorsRollupsTogetherAllComplete(t *testing.T) {
	t.Parallel()
	const operators, rollupsEach = 7, 10 // 70 calls to each member: 10 past its burst of 60
	dir := t.TempDir()
	issues := [][]string{
		{"--role", "node", "--member", "FR"}, {"--role", "node", "--member", "IT"},
		{"--role", "member-admin", "--member", "FR", "--name", "ops"}, {"--role", "member-admin", "--member", "IT", "--name", "ops"},
		{"--role", "coordinator", "--name", "main"},
	}
	for i := range operators {
		issues = append(issues, []string{"--role", "operator", "--name", fmt.Sprintf("op%d", i+1)})
	}
	pkiDir := initPKI(t, filepath.Join(dir, "pki"), issues...)
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	coordArgs := []string{"coordinator", "--data", filepath.Join(dir, "coord.db"),
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key")}
	for _, member := range []string{"FR", "IT"} {
		addr := freeAddr(t)
		serveCLI(t, pkiDir, addr, identity.MemberAdmin("isa", member, "ops"), identity.Node("isa", member),
			"node", "--member", member, "--data", filepath.Join(dir, member+".db"), "--listen", addr, "--min-cell-count", "3",
			"--cacert", p("ca.crt"), "--cert", p("node-"+member+".crt"), "--key", p("node-"+member+".key"))
		coordArgs = append(coordArgs, "--member", member+"="+addr)
	}
	coord := freeAddr(t)
	serveCLI(t, pkiDir, coord, identity.Operator("isa", "op1"), identity.Coordinator("isa", "main"),
		append(coordArgs, "--listen", coord)...)

	errs := make(chan error, operators*rollupsEach)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range operators {
		op := fmt.Sprintf("operator-op%d", i+1)
		wg.Go(func() {
			for range rollupsEach {
				_, stderr, err := runCLI(t, t.Context(), "rollup", "--coordinator", coord, "--from", "2020-01-01", "--to", "2020-01-31",
					"--metrics", "arrests", "--cacert", p("ca.crt"), "--cert", p(op+".crt"), "--key", p(op+".key"))
				if err != nil {
					err = fmt.Errorf("%s: %w\n%s", op, err, stderr)
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	t.Logf("%d rollups of %d operators in %v", operators*rollupsEach, operators, time.Since(start).Round(time.Millisecond))
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("rollup: %v", err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d rollups did not complete", failed, operators*rollupsEach)
	}
}
