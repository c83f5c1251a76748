package yamlconf

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	type conf struct {
		Listen  string `yaml:"listen"`
		Timeout int    `yaml:"timeout"`
	}
	var c conf
	if err := Decode([]byte("listen: a:1\ntimeout: 3\n"), &c); err != nil || c.Listen != "a:1" || c.Timeout != 3 {
		t.Fatalf("got %+v, %v", c, err)
	}
	if err := Decode(nil, &c); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	for in, want := range map[string]string{
		"listen: a\nlistn: b\n": `line 2: unknown key "listn"`,
		"timeout: soon\n":       "line 1: cannot unmarshal",
		"listen: [\n":           "line",
	} {
		if err := Decode([]byte(in), &conf{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}
