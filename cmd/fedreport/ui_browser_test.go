package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The browser tests drive Debian's chromium through chromedp against a
// real demo federation. Where chromium is missing they fail when CI is set
// (.ci/run sets it and installs chromium first) and skip otherwise, so a
// developer without a browser still runs every other test.

// chromiumPath returns the browser to drive: $FEDREPORT_CHROMIUM, or
// chromium on the PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FEDREPORT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI is set: the browser tests must run (apt-get install -y chromium; .ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); set CI=1 to make this a failure")
	return ""
}

// browser starts a headless chromium with a fresh profile for the test.
// The flags keep it off the network: this federation is loopback only.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser, under no deadline (a deadline
	// there would stop the browser with it); later ones have theirs.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browserWait bounds each step of a browser test.
const browserWait = 20 * time.Second

// steps runs actions in the tab of ctx, in order, or fails the test.
func steps(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		// Say where the browser was, and what it showed.
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		defer lcancel()
		where, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 2000)`))
		t.Fatalf("%v; the page at the time: %s", err, where)
	}
}

// value runs one action that returns a value, or fails the test.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type css = chromedp.CSS

// startUI runs `fedreport ui` as role of the kept demo m on a free
// loopback port until the test ends, and returns the URL it printed.
func startUI(t *testing.T, m demoManifest, role string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stderr lockedBuffer
	go func() {
		args := append([]string{"ui", "--listen", "127.0.0.1:0"}, m.clientArgs(role)...)
		err := run(ctx, args, strings.NewReader(""), pw, &stderr)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ui as %s: %v", role, err)
		}
	})
	sc := bufio.NewScanner(pr)
	url := ""
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "Open: "); ok {
			url = u
		}
		if strings.Contains(sc.Text(), "Ctrl-C") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatalf("ui as %s printed no URL; stderr: %s", role, stderr.String())
	}
	if stderr.String() != "" {
		t.Errorf("ui on loopback wrote to stderr: %s", stderr.String())
	}
	return url
}

// screenshot saves the full page as name.png under dir and logs where.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := value(t, ctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// screenshotDir is the test's temp dir, or $FEDREPORT_SCREENSHOTS to keep them.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("FEDREPORT_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// shownTotal is one total the operation page shows.
type shownTotal struct {
	Rollup, Metric, Value, Window string
}

// TestBrowserDashboard opens the dashboard in chromium against a demo
// federation: as an operator it reads the operation, checks the numbers
// shown against the coordinator's API, clicks through to a rollup and
// starts one; as an analyst it is offered no form, and a forged one is
// refused by the coordinator, as the page shows.
func TestBrowserDashboard(t *testing.T) {
	chromiumPath(t) // before the demo: skip or fail early
	m := keptDemo(t)
	shots := screenshotDir(t)
	conn, err := dialCoordinator(m.Coordinator, tlsOptions{cacert: m.CA, cert: m.Identities["analyst"].Cert, key: m.Identities["analyst"].Key})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := fedreportv1.NewCoordinatorServiceClient(conn)

	t.Run("operator", func(t *testing.T) {
		ctx := browser(t)
		url := startUI(t, m, "operator")
		base := strings.SplitN(url, "/?", 2)[0]
		steps(t, ctx, chromedp.Navigate(url), chromedp.WaitVisible(css("#identity")))
		if who := value(t, ctx, chromedp.Text(css("#identity"))); who != "spiffe://isa/operator/demo" {
			t.Errorf("signed in as %q, want the operator", who)
		}
		steps(t, ctx, chromedp.Click(css(`a[href="/operations/isa-2020"]`)), chromedp.WaitVisible(css("#metric-arrests")))
		shown := value(t, ctx, chromedp.Evaluate[[]shownTotal](`[...document.querySelectorAll('p.total')].map(p => ({
			Rollup: p.dataset.rollup, Metric: p.dataset.metric, Value: p.querySelector('strong').textContent,
			Window: p.closest('.window').dataset.window}))`))
		screenshot(t, ctx, shots, "operation")
		if len(shown) != 15 {
			t.Fatalf("got %d totals on the operation page, want 15 (3 windows × 5 metrics): %v", len(shown), shown)
		}
		// Every number shown is the total of the rollup it names, as the
		// coordinator's API gives it; the whole operation's are the
		// published results.
		published := map[string]string{"arrests": "771", "victims_identified": "549", "sites_blocked": "580"}
		wholeID := ""
		for _, s := range shown {
			resp, err := api.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: s.Rollup})
			if err != nil {
				t.Fatalf("GetRollup %s: %v", s.Rollup, err)
			}
			want := ""
			for _, c := range resp.GetRollup().GetTotals() {
				if strings.EqualFold(strings.TrimPrefix(c.GetMetric().String(), "METRIC_"), s.Metric) {
					want = formatCell(c)
				}
			}
			if s.Value != want {
				t.Errorf("%s, %s: the page shows %s, rollup %s's total is %s", s.Window, s.Metric, s.Value, s.Rollup, want)
			}
			if s.Window == "Whole operation" {
				wholeID = s.Rollup
				if p, ok := published[s.Metric]; ok && s.Value != p {
					t.Errorf("whole operation %s: the page shows %s, want %s", s.Metric, s.Value, p)
				}
			}
		}

		// Click through to the whole operation's rollup.
		steps(t, ctx, chromedp.Click(css(fmt.Sprintf(`#windows a[href="/rollups/%s"]`, wholeID))), chromedp.WaitVisible(css("#rollup-state")))
		state := value(t, ctx, chromedp.Text(css("#rollup-state")))
		totals := value(t, ctx, chromedp.Text(css("#totals")))
		screenshot(t, ctx, shots, "rollup")
		for _, want := range []string{"771", "549", "580"} {
			if !strings.Contains(totals, want) {
				t.Errorf("rollup %s page: totals %q lack %s", wholeID, totals, want)
			}
		}
		if state != "complete" {
			t.Errorf("rollup %s page: state %q, want complete", wholeID, state)
		}

		// Start a rollup of phase 2 from the rollups page's form.
		steps(t, ctx,
			chromedp.Navigate(base+"/rollups"),
			chromedp.WaitVisible(css("#start-rollup")),
			chromedp.SetValue(css("#from"), "2020-06-01"),
			chromedp.SetValue(css("#to"), "2020-09-30"),
			chromedp.Click(css("#start-rollup button")),
			chromedp.WaitVisible(css("#rollup-id")),
		)
		id := value(t, ctx, chromedp.Text(css("#rollup-id")))
		state = value(t, ctx, chromedp.Text(css("#rollup-state")))
		screenshot(t, ctx, shots, "started")
		got, err := api.GetRollup(t.Context(), &fedreportv1.GetRollupRequest{Id: id})
		if err != nil {
			t.Fatalf("the rollup the page shows, %s: %v", id, err)
		}
		if r := got.GetRollup(); r.GetRequestedBy() != "spiffe://isa/operator/demo" || r.GetSpec().GetFrom() != "2020-06-01" || state != "complete" {
			t.Errorf("started rollup %s: requested by %s for %s.., state %s; want the operator's, 2020-06-01, complete", id, r.GetRequestedBy(), r.GetSpec().GetFrom(), state)
		}

		// The list, filtered by state, shows it.
		steps(t, ctx,
			chromedp.Navigate(base+"/rollups"),
			chromedp.WaitVisible(css("form.filter")),
			chromedp.SetValue(css("#state"), "complete"),
			chromedp.Click(css("form.filter button")),
			chromedp.WaitReady(css(`#state option[value="complete"][selected]`)),
		)
		if listed := value(t, ctx, chromedp.Text(css("#rollups"))); !strings.Contains(listed, id) || strings.Contains(listed, "failed") {
			t.Errorf("rollups filtered by complete: %q, want %s and no other state", listed, id)
		}
	})

	t.Run("analyst", func(t *testing.T) {
		ctx := browser(t)
		url := startUI(t, m, "analyst")
		base := strings.SplitN(url, "/?", 2)[0]
		steps(t, ctx, chromedp.Navigate(url), chromedp.Navigate(base+"/rollups"), chromedp.WaitVisible(css("#rollups")))
		forms := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method=post]').length`))
		banner := value(t, ctx, chromedp.Text(css(".who")))
		if forms != 0 || !strings.Contains(banner, "only an operator starts rollups") {
			t.Errorf("an analyst's rollups page: %d forms that start rollups, banner %q; want none, and why", forms, banner)
		}
		// The members page: every member, reachable, with its policy.
		steps(t, ctx, chromedp.Click(css(`nav a[href="/members"]`)), chromedp.WaitVisible(css("#members")))
		rows := value(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#members tbody tr')].map(r => r.innerText)`))
		screenshot(t, ctx, shots, "members")
		if len(rows) != 9 {
			t.Errorf("members page: %d rows, want 9", len(rows))
		}
		for _, r := range rows {
			if !strings.Contains(r, "yes") || !strings.Contains(r, "phase-1: 2020-01-01..2020-05-30") || !strings.Contains(r, "offence") {
				t.Errorf("members page row %q: want reachable, the phase-1 release period and the offence table", r)
			}
		}
		steps(t, ctx, chromedp.Navigate(base+"/operations/isa-2020"), chromedp.WaitVisible(css("#metric-arrests")))
		if forms := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method=post]').length`)); forms != 0 {
			t.Errorf("an analyst's operation page has %d forms that start rollups, want none", forms)
		}
		// A form an analyst builds by hand (with the page's CSRF token)
		// still reaches the coordinator, which refuses it; the page says so.
		value(t, ctx, chromedp.Evaluate[bool](`(() => {
			const f = document.createElement('form');
			f.method = 'post'; f.action = '/rollups';
			for (const [k, v] of [['csrf', document.querySelector('meta[name=csrf-token]').content], ['from', '2020-01-01'], ['to', '2020-09-30']]) {
				const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
			}
			document.body.appendChild(f); f.submit(); return true;
		})()`))
		steps(t, ctx, chromedp.WaitVisible(css("#refusal")))
		refusal := value(t, ctx, chromedp.Text(css("#refusal")))
		screenshot(t, ctx, shots, "analyst-refused")
		if !strings.Contains(refusal, "PermissionDenied") || !strings.Contains(refusal, "spiffe://isa/analyst/demo") {
			t.Errorf("analyst's start: the page says %q, want the coordinator's PermissionDenied naming the analyst", refusal)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
