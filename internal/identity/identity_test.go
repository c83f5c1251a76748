package identity

import (
	"net/url"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []ID{
		Node("isa", "FR"),
		Coordinator("isa", "main"),
		Operator("isa", "alice"),
		Analyst("isa.example", "bob-2"),
		MemberAdmin("isa", "GB", "ops.1"),
	} {
		got, err := Parse(id.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", id, err)
		}
		if got != id {
			t.Errorf("Parse(%q) = %+v, want %+v", id, got, id)
		}
		if u := id.URL(); u.String() != id.String() {
			t.Errorf("URL() = %q, want %q", u, id)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]string{
		"another scheme":            "https://isa/node/FR",
		"no trust domain":           "spiffe:///node/FR",
		"lower-case member":         "spiffe://isa/node/fr",
		"node with a name":          "spiffe://isa/node/FR/x",
		"unknown role":              "spiffe://isa/admin/root",
		"operator without name":     "spiffe://isa/operator/",
		"member admin without name": "spiffe://isa/member-admin/FR",
		"query string":              "spiffe://isa/node/FR?x=1",
		"port":                      "spiffe://isa:1/node/FR",
		"dot segment":               "spiffe://isa/operator/../node/FR",
		"upper-case trust domain":   "spiffe://ISA/node/FR",
		"user info":                 "spiffe://u@isa/node/FR",
	} {
		if id, err := Parse(s); err == nil {
			t.Errorf("%s: Parse(%q) = %+v, want an error", name, s, id)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"spiffe://isa/node/FR", "spiffe://isa/member-admin/FR/a", "spiffe://isa/operator/x", "spiffe://x/y/z/w", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid identity: %v", s, err)
		}
		u, err := url.Parse(s)
		if err != nil || u.String() != id.String() {
			t.Fatalf("Parse(%q) = %q, not the same identity", s, id)
		}
	})
}

// TestUpperMember upper-cases ASCII letters only: non-ASCII letters that
// strings.ToUpper maps onto ASCII ones (ſ to S, ı to I) are kept, so
// ValidMember refuses the result.
func TestUpperMember(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string
		valid    bool
	}{
		{"fr", "FR", true}, {"It", "IT", true}, {"gb2", "GB2", true}, {"EU", "EU", true},
		{"f-r", "F-R", false}, {"ſe", "ſE", false}, {"ıt", "ıT", false}, {"", "", false},
	} {
		got := UpperMember(tt.in)
		if got != tt.want || ValidMember(got) != tt.valid {
			t.Errorf("UpperMember(%q): got %q (valid %v), want %q (valid %v)", tt.in, got, ValidMember(got), tt.want, tt.valid)
		}
	}
}
