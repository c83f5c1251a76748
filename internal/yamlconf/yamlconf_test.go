package yamlconf

import (
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	type conf struct {
		Listen  string        `yaml:"listen"`
		Timeout int           `yaml:"timeout"`
		Wait    time.Duration `yaml:"wait"`
		Count   uint32        `yaml:"count"`
		Rate    float64       `yaml:"rate"`
		Members []struct {
			Code   string `yaml:"code"`
			Weight int    `yaml:"weight"`
		} `yaml:"members"`
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
		"timeout: soon\n":       "line 1: timeout: want a whole number, not soon",
		"listen: [\n":           "line",
		// A type error names the key and what to write.
		"listen: a\nwait: 10\n":                     "line 2: wait: want a duration such as 10s, not 10",
		"count: \"five\"\n":                         "line 1: count: want a whole number, 0 or more, not five",
		"rate: fast\nwait: 1m\n":                    "line 1: rate: want a number such as 0.5, not fast",
		"members: 3\n":                              "line 1: members: want a list, not 3",
		"members:\n  - {code: FR, weight: heavy}\n": "line 2: weight: want a whole number, not heavy",
		"listen: [a, b]\n":                          "line 1: listen: want text, not a list",
	} {
		if err := Decode([]byte(in), &conf{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// FuzzDecode decodes arbitrary documents into a config of every kind of
// field: Decode must never panic, and a document it refuses gets a message
// (the rewriting of type errors reads the document's nodes, which a
// malformed document may leave half-built).
func FuzzDecode(f *testing.F) {
	type conf struct {
		Listen  string            `yaml:"listen"`
		Timeout int               `yaml:"timeout"`
		Wait    time.Duration     `yaml:"wait"`
		Count   *uint32           `yaml:"count"`
		Rate    float64           `yaml:"rate"`
		On      bool              `yaml:"on"`
		Labels  map[string]string `yaml:"labels"`
		Members []struct {
			Code   string `yaml:"code"`
			Weight int    `yaml:"weight"`
		} `yaml:"members"`
	}
	for _, seed := range []string{
		"listen: a:1\ntimeout: 3\n", "wait: 10\n", "count: \"five\"\n", "members:\n  - {code: FR, weight: heavy}\n",
		"labels: [a]\n", "on: maybe\nrate: fast\n", "listen: [\n", "? [a]\n: b\n", "a: &x 1\nwait: *x\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var c conf
		if err := Decode(doc, &c); err != nil && err.Error() == "" {
			t.Errorf("Decode(%q): an error without a message", doc)
		}
	})
}
