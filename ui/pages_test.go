package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// get fetches target with a session and returns the status and body.
func get(t *testing.T, h http.Handler, cookie *http.Cookie, target string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "http://"+testAddr+target, nil)
	req.AddCookie(cookie)
	resp := do(h, req)
	return resp.StatusCode, readBody(t, resp)
}

// The rollups page passes the state filter and the page token to
// ListRollups, links the next page with both, and refuses an unknown state.
func TestRollupsPageFiltersAndPages(t *testing.T) {
	t.Parallel()
	var asked []*fedreportv1.ListRollupsRequest
	c := &fakeClient{list: func(req *fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error) {
		asked = append(asked, req)
		return &fedreportv1.ListRollupsResponse{
			Rollups:       []*fedreportv1.Rollup{{Id: "r00000042", State: req.GetState(), Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-09-30"}}},
			NextPageToken: "tok2",
		}, nil
	}}
	_, h := newTestServer(t, c, identity.Analyst("isa", "bob"))
	cookie := session(t, h)
	code, body := get(t, h, cookie, "/rollups?state=partial")
	if code != http.StatusOK || asked[0].GetState() != fedreportv1.RollupState_ROLLUP_STATE_PARTIAL || asked[0].GetPageToken() != "" {
		t.Fatalf("got %d, asked %v; want 200 and a request for partial rollups", code, asked[0])
	}
	for _, want := range []string{`href="/rollups/r00000042"`, `href="/rollups?state=partial&amp;page_token=tok2"`, `<option value="partial" selected>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the rollups page lacks %s", want)
		}
	}
	if code, _ := get(t, h, cookie, "/rollups?state=partial&page_token=tok2"); code != http.StatusOK || asked[1].GetPageToken() != "tok2" {
		t.Errorf("next page: got %d, asked %v; want the token passed on", code, asked[1])
	}
	if code, _ := get(t, h, cookie, "/rollups?state=bogus"); code != http.StatusBadRequest {
		t.Errorf("an unknown state: got %d, want 400", code)
	}
}

// One rollup's page shows its state, its missing members above totals
// that are not called the alliance's, bounds, and every member's status
// with its reason.
func TestRollupPageShowsAPartialRollupHonestly(t *testing.T) {
	t.Parallel()
	c := reportFixture()
	_, h := newTestServer(t, c, identity.Analyst("isa", "bob"))
	code, body := get(t, h, session(t, h), "/rollups/r00000004")
	if code != http.StatusOK {
		t.Fatalf("got %d", code)
	}
	for _, want := range []string{"partial", "Missing members: <strong>SN</strong>", "they are not the alliance total", "Sums of the members that answered", "timeout", "no answer within 10s"} {
		if !strings.Contains(body, want) {
			t.Errorf("the rollup page lacks %q", want)
		}
	}
	if strings.Contains(body, "Alliance totals") {
		t.Error("a partial rollup's totals are captioned as the alliance totals")
	}
	if code, _ := get(t, h, session(t, h), "/operations/nope"); code != http.StatusNotFound {
		t.Errorf("an unknown operation: got %d, want 404", code)
	}
}
