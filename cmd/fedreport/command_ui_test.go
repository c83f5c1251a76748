package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
	"github.com/isa-alliance/fedreport/ui"
)

func TestUIListensOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	def := newUICommand().Flags().Lookup("listen").DefValue
	if def != "127.0.0.1:8080" || !ui.IsLoopback(def) {
		t.Errorf("--listen defaults to %s, want 127.0.0.1:8080", def)
	}
}

// TestUIOnEveryInterfaceWarnsAndStillWantsTheToken: --listen 0.0.0.0 is
// served only because the flag says so, with a warning on stderr, and a
// browser without the token is refused (401) there too, as is another
// origin.
func TestUIOnEveryInterfaceWarnsAndStillWantsTheToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir, "--trust-domain", "isa")
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "analyst", "--name", "bob")
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		// The coordinator is never called: no page is asked for past the token check.
		err := run(ctx, []string{"ui", "--listen", "0.0.0.0:0", "--coordinator", "127.0.0.1:1",
			"--cacert", filepath.Join(pkiDir, "ca.crt"), "--cert", filepath.Join(pkiDir, "analyst-bob.crt"), "--key", filepath.Join(pkiDir, "analyst-bob.key")},
			strings.NewReader(""), pw, &stderr)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ui: %v", err)
		}
	}()
	sc := bufio.NewScanner(pr)
	var url string
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "Open: "); ok {
			url = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatalf("no URL printed; stderr: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "warning: --listen 0.0.0.0:0 is not loopback") {
		t.Errorf("stderr: %q, want a warning that --listen is not loopback", stderr.String())
	}
	// The server listens on every interface; reach it on loopback.
	port := regexp.MustCompile(`:(\d+)/`).FindStringSubmatch(url)[1]
	base := "http://127.0.0.1:" + port
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(target string, header map[string]string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), "GET", target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(base+"/", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: got %d, want 401", resp.StatusCode)
	}
	token := url[strings.Index(url, "?token="):]
	resp := get(base+"/"+token, nil)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("with the token: got %d and %d cookies, want 303 and the session cookie", resp.StatusCode, len(resp.Cookies()))
	}
	cookie := resp.Cookies()[0]
	if resp := get(base+"/static/style.css", map[string]string{"Cookie": cookie.Name + "=" + cookie.Value, "Origin": "http://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another origin with the cookie: got %d, want 403", resp.StatusCode)
	}
	if resp := get(base+"/static/style.css", map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); resp.StatusCode != http.StatusOK {
		t.Errorf("the cookie: got %d, want 200", resp.StatusCode)
	}
}

// TestReportOfTheDemoOperation: `fedreport report` writes one HTML file
// that refers to nothing outside it, whose totals are those of the
// rollups it names (771 / 549 / 580 for the whole operation), as an
// analyst may.
func TestReportOfTheDemoOperation(t *testing.T) {
	t.Parallel()
	m := keptDemo(t)
	out := filepath.Join(t.TempDir(), "report.html")
	mustRunCLI(t, append([]string{"report", "--operation", "isa-2020", "-o", out}, m.clientArgs("analyst")...)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialCoordinator(m.Coordinator, tlsOptions{cacert: m.CA, cert: m.Identities["analyst"].Cert, key: m.Identities["analyst"].Key})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := fedreportv1.NewCoordinatorServiceClient(conn)
	whole := map[string]string{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		attr := map[string]string{}
		for _, a := range n.Attr {
			attr[a.Key] = a.Val
			if k := strings.TrimPrefix(a.Key, "xlink:"); (k == "href" || k == "src" || k == "action") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("<%s %s=%q> refers outside the report", n.Data, a.Key, a.Val)
			}
		}
		if n.Type == html.ElementNode && (n.Data == "link" || n.Data == "script" || n.Data == "img") {
			t.Errorf("the report has a <%s>", n.Data)
		}
		if id := attr["data-rollup"]; id != "" {
			resp, err := api.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: id})
			if err != nil {
				t.Fatalf("GetRollup %s: %v", id, err)
			}
			for _, c := range resp.GetRollup().GetTotals() {
				if strings.EqualFold(strings.TrimPrefix(c.GetMetric().String(), "METRIC_"), attr["data-metric"]) && formatCell(c) != attr["data-value"] {
					t.Errorf("%s %s: the report shows %s, the rollup %s", id, attr["data-metric"], attr["data-value"], formatCell(c))
				}
			}
			if resp.GetRollup().GetSpec().GetFrom() == "2020-01-01" && resp.GetRollup().GetSpec().GetTo() == "2020-09-30" {
				whole[attr["data-metric"]] = attr["data-value"]
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for metric, want := range map[string]string{"arrests": "771", "victims_identified": "549", "sites_blocked": "580"} {
		if whole[metric] != want {
			t.Errorf("whole operation %s: the report shows %q, want %s", metric, whole[metric], want)
		}
	}
	if _, _, err := runCLI(t, t.Context(), append([]string{"report", "--operation", "nope", "-o", out}, m.clientArgs("analyst")...)...); err == nil || !strings.Contains(err.Error(), "isa-2020") {
		t.Errorf("report of an unknown operation: got %v, want an error naming isa-2020", err)
	}
}
