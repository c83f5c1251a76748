package robustness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walkthrough returns the commands of the README's walkthrough, in order:
// the lines of its first sh block, continuation lines joined, comments kept
// (one of them is the step that stops FR's node).
func walkthrough(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Walkthrough")
	if !ok {
		t.Fatal("README.md has no Walkthrough section")
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the walkthrough has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	cur := ""
	for line := range strings.SplitSeq(block, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur += rest + " "
			continue
		}
		if line = cur + line; line != "" {
			cmds = append(cmds, line)
		}
		cur = ""
	}
	return cmds
}

// TestREADMEWalkthroughRunsAsWritten runs the README's walkthrough, command
// by command as written, against real processes of the built binary: the
// servers in the background (as in their own terminals), every other
// command to completion, which must succeed, and the comment that stops
// FR's node as an interrupt of that process. It needs the walkthrough's
// fixed ports, and skips when one is taken.
func TestREADMEWalkthroughRunsAsWritten(t *testing.T) {
	cmds := walkthrough(t)
	for _, port := range []string{"7443", "7444", "7400", "8080"} {
		lis, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Skipf("the walkthrough's port %s is taken: %v", port, err)
		}
		lis.Close()
	}
	root := t.TempDir()
	cwd := root
	var exports []string
	servers := map[string]*exec.Cmd{} // by the member or "coordinator"
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Process.Kill()
			_ = s.Wait()
		}
	})
	memberRE := regexp.MustCompile(`--member (\w+) `)
	for _, line := range cmds {
		t.Logf("$ %s", line)
		switch {
		case strings.HasPrefix(line, "#"):
			if strings.Contains(line, "Stop FR's node") {
				s := servers["FR"]
				if s == nil {
					t.Fatalf("%q: FR's node is not running", line)
				}
				if err := s.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
				if err := s.Wait(); err != nil {
					t.Fatalf("FR's node after Ctrl-C: %v", err)
				}
				delete(servers, "FR")
			}
		case strings.HasPrefix(line, "go build -o fedreport "):
			// The binary built once for this package stands for it.
			b, err := os.ReadFile(binary)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cwd, "fedreport"), b, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(line, "export "):
			exports = append(exports, line)
		case strings.Contains(line, "../fedreport ui"):
			// The dashboard (terminal 4): it prints the URL to open,
			// which must admit this client and show the members. The
			// line starts with its certificate's variables: exec goes
			// after them.
			cmd := exec.Command("bash", "-c", strings.Join(append(exports, strings.Replace(line, "../fedreport", "exec ../fedreport", 1)), "\n"))
			cmd.Dir = cwd
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			servers["ui"] = cmd
			openDashboard(t, line, stdout, &stderr)
		case strings.HasPrefix(line, "../fedreport node ") || strings.HasPrefix(line, "../fedreport coordinator "):
			name, ready := "coordinator", `msg="coordinator serving"`
			if strings.HasPrefix(line, "../fedreport node ") {
				name, ready = memberRE.FindStringSubmatch(line)[1], `msg="node serving"`
			}
			cmd := exec.Command("bash", "-c", strings.Join(append(exports, "exec "+line), "\n"))
			cmd.Dir = cwd
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			servers[name] = cmd
			waitFor(t, line, stderr, ready)
		default:
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			cmd := exec.CommandContext(ctx, "bash", "-e", "-c", strings.Join(append(exports, line, `echo "__pwd=$PWD"`), "\n"))
			cmd.Dir = cwd
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s\n%v\n%s", line, err, out)
			}
			t.Logf("%s", strings.TrimSpace(string(out[:max(0, strings.LastIndex(string(out), "__pwd="))])))
			if i := strings.LastIndex(string(out), "__pwd="); i >= 0 {
				cwd = strings.TrimSpace(string(out[i+len("__pwd="):]))
			}
		}
	}
	if len(servers) != 3 {
		t.Errorf("servers still running at the end: %d, want IT's node, the coordinator and the dashboard", len(servers))
	}
}

// openDashboard reads the URL `fedreport ui` prints and opens it as a
// browser would (the token, then its cookie), then its members page, which
// must name both members.
func openDashboard(t *testing.T, line string, stdout io.Reader, stderr fmt.Stringer) {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "Open: "); ok {
				found <- u
			}
		}
	}()
	var u string
	select {
	case u = <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: printed no URL to open within 30 s; it said:\n%s", line, stderr)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	for _, page := range []string{u, strings.SplitN(u, "/?", 2)[0] + "/members"} {
		resp, err := client.Get(page)
		if err != nil {
			t.Fatalf("%s: open %s: %v", line, page, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s: %s\n%s", line, page, resp.Status, body)
		}
		if strings.HasSuffix(page, "/members") && (!strings.Contains(string(body), "FR") || !strings.Contains(string(body), "IT")) {
			t.Errorf("%s: the members page names neither FR nor IT:\n%s", line, body)
		}
	}
}

// waitFor reads the log of a server started by line until a line contains
// want, then keeps draining it; it fails the test if the server's log ends
// first, or after 30 s.
func waitFor(t *testing.T, line string, log io.Reader, want string) {
	t.Helper()
	found := make(chan string, 1) // "" when found, else what was logged
	go func() {
		sc := bufio.NewScanner(log)
		var seen strings.Builder
		sent := false
		for sc.Scan() {
			if !sent {
				seen.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), want) {
					found <- ""
					sent = true
				}
			}
		}
		if !sent {
			found <- seen.String()
		}
	}()
	select {
	case logged := <-found:
		if logged != "" {
			t.Fatalf("%s: exited without %s:\n%s", line, want, logged)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no %s within 30s", line, want)
	}
}
