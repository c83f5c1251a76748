package robustness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the fedreport command built once for the package's tests;
// bboltCLI is bbolt's own command, whose check the crash tests run.
var binary, bboltCLI string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "fedreport-robustness-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "fedreport")
		bboltCLI = filepath.Join(dir, "bbolt")
		for out, pkg := range map[string]string{binary: "github.com/isa-alliance/fedreport/cmd/fedreport", bboltCLI: "go.etcd.io/bbolt/cmd/bbolt"} {
			build := exec.Command("go", "build", "-o", out, pkg)
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "build", pkg+":", err)
				return 1
			}
		}
		return m.Run()
	}())
}

// proc is a running fedreport process whose stderr (its log) is kept.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done is closed

	mu  sync.Mutex // protects log
	log strings.Builder
	// lines receives every log line until the process exits.
	lines chan string
}

// start runs fedreport with args until the test ends (then it is killed).
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// output returns what the process logged so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog returns the first submatch of re in the process's log, waiting up
// to timeout; it fails the test if the process exits first.
func (p *proc) waitLog(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("process exited (%v) before logging %v:\n%s", p.err, re, p.output())
			}
			if m := re.FindStringSubmatch(line); m != nil {
				if len(m) > 1 {
					return m[1]
				}
				return m[0]
			}
		case <-deadline:
			t.Fatalf("no log line matching %v within %s:\n%s", re, timeout, p.output())
		}
	}
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("process still running after %s:\n%s", timeout, p.output())
		return nil
	}
}

// run runs fedreport to completion and returns its combined output.
func run(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	return string(out), err
}

// runCmd runs another program to completion and returns its combined output.
func runCmd(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	return string(out), err
}
