package coordinator

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/testpki"
)

func TestParseMember(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     Member
		err      string
	}{
		{"a code and an address", "FR=127.0.0.1:7443", Member{"FR", "127.0.0.1:7443"}, ""},
		{"a host name and digits in the code", "GB2=node.gb.example:443", Member{"GB2", "node.gb.example:443"}, ""},
		{"an IPv6 address", "AU=[::1]:7443", Member{"AU", "[::1]:7443"}, ""},
		{"no equals sign", "FR127.0.0.1:7443", Member{}, "want CODE=host:port"},
		{"a lower-case code", "fr=127.0.0.1:7443", Member{}, "upper-case"},
		{"a one-letter code", "F=127.0.0.1:7443", Member{}, "2-8"},
		{"a nine-letter code", "ABCDEFGHI=127.0.0.1:7443", Member{}, "2-8"},
		{"no port", "FR=127.0.0.1", Member{}, "host:port"},
		{"no host", "FR=:7443", Member{}, "host is empty"},
		{"a port out of range", "FR=127.0.0.1:70000", Member{}, "1-65535"},
		{"port zero", "FR=127.0.0.1:0", Member{}, "1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMember(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseMember(%q): got %v, want an error containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMember(%q): got %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMemberListRefusesDuplicateCodes(t *testing.T) {
	t.Parallel()
	var l MemberList
	if err := l.Set("FR=127.0.0.1:7443"); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("IT=127.0.0.1:7444"); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("FR=127.0.0.1:7445"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: got %v, want an error saying FR is registered twice", err)
	}
	if got, want := l.String(), "FR=127.0.0.1:7443,IT=127.0.0.1:7444"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
	if err := ValidateMembers([]Member{{"FR", "a:1"}, {"FR", "b:2"}}); err == nil {
		t.Error("ValidateMembers with a duplicate: got nil, want an error")
	}
	if err := ValidateMembers(nil); err == nil {
		t.Error("ValidateMembers with no member: got nil, want an error")
	}
}

func TestParseFileConfig(t *testing.T) {
	t.Parallel()
	const good = `
listen: 127.0.0.1:7400
data: coord.db
trust_domain: isa
member_timeout: 3s
min_members: 2
members:
  - {code: FR, address: 127.0.0.1:7443}
  - code: IT
    address: 127.0.0.1:7444
cacert: ca.crt
cert: coordinator-main.crt
key: coordinator-main.key
`
	fc, err := ParseFileConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if fc.Listen != "127.0.0.1:7400" || fc.Data != "coord.db" || fc.TrustDomain != "isa" || fc.MemberTimeout != 3*time.Second ||
		fc.MinMembers != 2 || len(fc.Members) != 2 || fc.Members[1] != (Member{"IT", "127.0.0.1:7444"}) ||
		fc.CACert != "ca.crt" || fc.Cert != "coordinator-main.crt" || fc.Key != "coordinator-main.key" {
		t.Errorf("got %+v", fc)
	}

	for _, tt := range []struct{ name, yaml, err string }{
		{"an unknown key", "listen: x\nmember_timout: 3s\n", `unknown key "member_timout"`},
		{"an unknown member key", "members: [{code: FR, adress: 127.0.0.1:1}]\n", `unknown key "adress"`},
		{"a bad duration", "member_timeout: soon\n", "soon"},
		{"a negative timeout", "member_timeout: -1s\n", "negative"},
		{"a bad member code", "members: [{code: f-r, address: 127.0.0.1:1}]\n", `members[0]: member code "f-r": want 2-8 letters or digits`},
		{"a duplicate member", "members: [{code: FR, address: 127.0.0.1:1}, {code: FR, address: 127.0.0.1:2}]\n", "twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFileConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}

	if fc, err := ParseFileConfig(nil); err != nil || fc == nil {
		t.Errorf("empty file: got %v, %v; want an empty config", fc, err)
	}

	path := filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFileConfig(path); err != nil {
		t.Errorf("LoadFileConfig: %v", err)
	}
}

// TestParseFileConfigUpperCasesMemberCodes writes member codes in lower and
// mixed case: they are upper-cased as the --member flag does, the same
// code in two cases is one member registered twice, and only ASCII letters
// are upper-cased, so "ſe" (whose strings.ToUpper is "SE") stays refused.
func TestParseFileConfigUpperCasesMemberCodes(t *testing.T) {
	t.Parallel()
	fc, err := ParseFileConfig([]byte("member_code: eu\nmember_listen: 127.0.0.1:7401\nmember_cert: c\nmember_key: k\n" +
		"members: [{code: fr, address: 127.0.0.1:7443}, {code: It, address: 127.0.0.1:7444}, {code: gb2, address: 127.0.0.1:7445}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{"FR", "127.0.0.1:7443"}, {"IT", "127.0.0.1:7444"}, {"GB2", "127.0.0.1:7445"}}
	if !slices.Equal(fc.Members, want) || fc.MemberCode != "EU" {
		t.Errorf("got members %v and member_code %q, want %v and EU", fc.Members, fc.MemberCode, want)
	}

	for _, tt := range []struct{ name, yaml, err string }{
		{"fr and FR", "members: [{code: fr, address: 127.0.0.1:1}, {code: FR, address: 127.0.0.1:2}]\n",
			`members[1]: member FR is registered twice, as members[0] "fr" (127.0.0.1:1) and members[1] "FR" (127.0.0.1:2)`},
		{"a long s, which strings.ToUpper makes S", "members: [{code: ſe, address: 127.0.0.1:1}]\n",
			`members[0]: member code "ſe": want 2-8 letters or digits`},
		{"a dotless i in member_code", "member_code: ıt\n", `member_code "ıt": want 2-8 letters or digits`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFileConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

func TestOpenChecksItsConfig(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	for _, tt := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"no data path", func(c *Config) { c.DataPath = "" }},
		{"no members", func(c *Config) { c.Members = nil }},
		{"no member TLS", func(c *Config) { c.MemberTLS = nil }},
		{"a negative member timeout", func(c *Config) { c.MemberTimeout = -time.Second }},
		{"a quorum above the registry", func(c *Config) { c.MinMembers = 2 }},
		{"both quorum rules", func(c *Config) { c.MinMembers, c.RequireAll = 1, true }},
		{"a negative shutdown timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, ca, Member{"FR", "127.0.0.1:7443"})
			tt.mutate(&cfg)
			if c, err := Open(cfg); err == nil {
				_ = c.Close()
				t.Errorf("Open: got nil, want an error")
			}
		})
	}
}

func FuzzParseMember(f *testing.F) {
	for _, s := range []string{"FR=127.0.0.1:7443", "AU=[::1]:1", "=", "FR=:", "fr=x:1", "FR=a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMember(s)
		if err != nil {
			return
		}
		again, err := ParseMember(m.String())
		if err != nil || again != m {
			t.Errorf("ParseMember(%q) = %v, but its String %q parses to %v, %v", s, m, m.String(), again, err)
		}
	})
}

func FuzzParseFileConfig(f *testing.F) {
	for _, s := range []string{"", "listen: x\n", "members: [{code: FR, address: 127.0.0.1:1}]\n", "member_timeout: 1s\n", "- a\n", "{", isaYAML} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fc, err := ParseFileConfig(b)
		if err != nil {
			return
		}
		for _, m := range fc.Members {
			if _, err := ParseMember(m.String()); err != nil {
				t.Errorf("accepted member %v that ParseMember refuses: %v", m, err)
			}
		}
		// An accepted operation is valid as it stands: names given,
		// codes upper-cased, phases in order.
		for _, o := range fc.Operations {
			if err := o.Validate(); err != nil {
				t.Errorf("accepted operation %+v that Validate refuses: %v", o, err)
			}
			for i, p := range o.Phases {
				if p.Name == "" || i > 0 && p.From <= o.Phases[i-1].To {
					t.Errorf("accepted operation %s with phases %+v", o.Name, o.Phases)
				}
			}
		}
	})
}
