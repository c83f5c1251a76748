package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// fakeClient is a CoordinatorServiceClient whose answers come from func
// fields; nil fields answer empty.
type fakeClient struct {
	start func(*fedreportv1.StartRollupRequest) (*fedreportv1.StartRollupResponse, error)
	list  func(*fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error)
	get   func(*fedreportv1.GetRollupRequest) (*fedreportv1.GetRollupResponse, error)
	ops   []*fedreportv1.Operation
}

func (f *fakeClient) StartRollup(_ context.Context, in *fedreportv1.StartRollupRequest, _ ...grpc.CallOption) (*fedreportv1.StartRollupResponse, error) {
	if f.start == nil {
		return nil, status.Error(codes.Unimplemented, "no start")
	}
	return f.start(in)
}

func (f *fakeClient) GetRollup(_ context.Context, in *fedreportv1.GetRollupRequest, _ ...grpc.CallOption) (*fedreportv1.GetRollupResponse, error) {
	if f.get == nil {
		return nil, status.Error(codes.NotFound, "no such rollup")
	}
	return f.get(in)
}

func (f *fakeClient) ListRollups(_ context.Context, in *fedreportv1.ListRollupsRequest, _ ...grpc.CallOption) (*fedreportv1.ListRollupsResponse, error) {
	if f.list == nil {
		return &fedreportv1.ListRollupsResponse{}, nil
	}
	return f.list(in)
}

func (f *fakeClient) ListMembers(context.Context, *fedreportv1.ListMembersRequest, ...grpc.CallOption) (*fedreportv1.ListMembersResponse, error) {
	return &fedreportv1.ListMembersResponse{}, nil
}

func (f *fakeClient) ListOperations(context.Context, *fedreportv1.ListOperationsRequest, ...grpc.CallOption) (*fedreportv1.ListOperationsResponse, error) {
	return &fedreportv1.ListOperationsResponse{Operations: f.ops}, nil
}

const testAddr = "127.0.0.1:8080"

func newTestServer(t *testing.T, c *fakeClient, id identity.ID) (*Server, http.Handler) {
	t.Helper()
	s, err := New(Config{Client: c, Identity: id, Token: "secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	return s, s.Handler(testAddr)
}

// do sends req to h and returns the response.
func do(h http.Handler, req *http.Request) *http.Response {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

// session opens the token URL and returns the cookie it sets.
func session(t *testing.T, h http.Handler) *http.Cookie {
	t.Helper()
	resp := do(h, httptest.NewRequest("GET", "http://"+testAddr+"/rollups?token=secret-token&state=complete", nil))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("token URL: got %d, want 303", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "/rollups?state=complete" {
		t.Errorf("token URL redirects to %q, want the same page without the token", loc)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "fedreport_ui_8080" {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie %+v: want HttpOnly and SameSite=Strict", c)
			}
			return c
		}
	}
	t.Fatal("the token URL set no cookie")
	return nil
}

func TestSecurityNoTokenIs401(t *testing.T) {
	t.Parallel()
	_, h := newTestServer(t, &fakeClient{}, identity.Analyst("isa", "bob"))
	for _, target := range []string{"/", "/rollups", "/operations/isa-2020", "/static/style.css", "/?token=wrong"} {
		if resp := do(h, httptest.NewRequest("GET", "http://"+testAddr+target, nil)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: got %d, want 401", target, resp.StatusCode)
		}
	}
	req := httptest.NewRequest("GET", "http://"+testAddr+"/", nil)
	req.AddCookie(&http.Cookie{Name: "fedreport_ui_8080", Value: "guess"})
	if resp := do(h, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a guessed cookie: got %d, want 401", resp.StatusCode)
	}
	req = httptest.NewRequest("GET", "http://"+testAddr+"/", nil)
	req.AddCookie(session(t, h))
	if resp := do(h, req); resp.StatusCode != http.StatusOK {
		t.Errorf("with the session cookie: got %d, want 200", resp.StatusCode)
	}
}

func TestSecurityOtherOriginsAndHostsAreRefused(t *testing.T) {
	t.Parallel()
	_, h := newTestServer(t, &fakeClient{}, identity.Operator("isa", "alice"))
	cookie := session(t, h)
	for _, tc := range []struct {
		name   string
		method string
		host   string
		header map[string]string
		want   int
	}{
		{"a page of another origin reading a page", "GET", testAddr, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"another port of localhost", "GET", testAddr, map[string]string{"Origin": "http://127.0.0.1:9999"}, http.StatusForbidden},
		{"a cross-site fetch", "GET", testAddr, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"a same-site fetch (another port)", "GET", testAddr, map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"a form posted from another origin", "POST", testAddr, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"a rebound DNS name", "GET", "evil.example:8080", nil, http.StatusMisdirectedRequest},
		{"our own origin", "GET", testAddr, map[string]string{"Origin": "http://" + testAddr, "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"localhost for 127.0.0.1", "GET", "localhost:8080", nil, http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, "http://"+tc.host+"/", nil)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		req.AddCookie(cookie)
		if resp := do(h, req); resp.StatusCode != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

func TestSecurityFormsNeedTheCSRFToken(t *testing.T) {
	t.Parallel()
	started := 0
	c := &fakeClient{start: func(*fedreportv1.StartRollupRequest) (*fedreportv1.StartRollupResponse, error) {
		started++
		return &fedreportv1.StartRollupResponse{Rollup: &fedreportv1.Rollup{Id: "r00000009"}}, nil
	}}
	s, h := newTestServer(t, c, identity.Operator("isa", "alice"))
	cookie := session(t, h)
	post := func(form url.Values) *http.Response {
		req := httptest.NewRequest("POST", "http://"+testAddr+"/rollups", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://"+testAddr)
		req.AddCookie(cookie)
		return do(h, req)
	}
	form := url.Values{"from": {"2020-01-01"}, "to": {"2020-09-30"}}
	if resp := post(form); resp.StatusCode != http.StatusForbidden || started != 0 {
		t.Errorf("without the CSRF token: got %d and %d rollups, want 403 and none", resp.StatusCode, started)
	}
	form.Set("csrf", "forged")
	if resp := post(form); resp.StatusCode != http.StatusForbidden || started != 0 {
		t.Errorf("a forged CSRF token: got %d and %d rollups, want 403 and none", resp.StatusCode, started)
	}
	form.Set("csrf", s.csrf)
	if resp := post(form); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/rollups/r00000009" || started != 1 {
		t.Errorf("with the CSRF token: got %d to %q and %d rollups, want 303 to /rollups/r00000009 and 1", resp.StatusCode, resp.Header.Get("Location"), started)
	}
}

// An analyst is not offered the form; a forged post reaches the
// coordinator, whose refusal the page shows.
func TestAnAnalystGetsNoFormAndSeesTheRefusal(t *testing.T) {
	t.Parallel()
	c := &fakeClient{start: func(*fedreportv1.StartRollupRequest) (*fedreportv1.StartRollupResponse, error) {
		return nil, status.Error(codes.PermissionDenied, "spiffe://isa/analyst/bob may not call /fedreport.v1.CoordinatorService/StartRollup")
	}}
	s, h := newTestServer(t, c, identity.Analyst("isa", "bob"))
	cookie := session(t, h)
	req := httptest.NewRequest("GET", "http://"+testAddr+"/rollups", nil)
	req.AddCookie(cookie)
	body := readBody(t, do(h, req))
	if strings.Contains(body, `id="start-rollup"`) || !strings.Contains(body, "only an operator starts rollups") {
		t.Errorf("an analyst's rollups page offers the form, or does not say why not:\n%s", body)
	}
	form := url.Values{"from": {"2020-01-01"}, "to": {"2020-09-30"}, "csrf": {s.csrf}}
	req = httptest.NewRequest("POST", "http://"+testAddr+"/rollups", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	resp := do(h, req)
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "PermissionDenied") || !strings.Contains(body, "may not call") {
		t.Errorf("an analyst's post: got %d\n%s\nwant 403 with the coordinator's refusal", resp.StatusCode, body)
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "127.1.2.3:1": true,
		"0.0.0.0:8080": false, ":8080": false, "192.168.1.5:8080": false, "[::]:8080": false, "example.org:80": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q): got %v, want %v", addr, got, want)
		}
	}
}
