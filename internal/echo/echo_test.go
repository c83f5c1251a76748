package echo

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"a short value is quoted whole", "arrest", `"arrest"`},
		{"control characters are escaped", "a\x00b\n", `"a\x00b\n"`},
		{"a value of MaxBytes is whole", strings.Repeat("a", MaxBytes), `"` + strings.Repeat("a", MaxBytes) + `"`},
		{"a megabyte shows its start and length", strings.Repeat("a", 1<<20), `"` + strings.Repeat("a", MaxBytes) + `…" (1048576 bytes)`},
		{"a cut never splits a character", strings.Repeat("a", MaxBytes-1) + "é" + strings.Repeat("b", 10), `"` + strings.Repeat("a", MaxBytes-1) + `…" (43 bytes)`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	// The worst case for escaping: every byte shown becomes \xNN.
	worst := Quote(strings.Repeat("\xff", 1<<20))
	if len(worst) > 4*MaxBytes+32 || !utf8.ValidString(worst) {
		t.Errorf("Quote of a megabyte of invalid UTF-8 is %d bytes (valid UTF-8: %v), want at most %d", len(worst), utf8.ValidString(worst), 4*MaxBytes+32)
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	if got := Name("fr 2020.csv"); got != "fr 2020.csv" {
		t.Errorf("a plain file name: got %s, want it bare", got)
	}
	if got := Name("a\nb"); got != `"a\nb"` {
		t.Errorf("a name with a newline: got %s, want it quoted", got)
	}
	if got := Name(strings.Repeat("x", 1<<20)); len(got) > 64 {
		t.Errorf("a megabyte name: got %d bytes, want a few dozen", len(got))
	}
}

func TestLimit(t *testing.T) {
	t.Parallel()
	if got := Limit("short", 10); got != "short" {
		t.Errorf("got %q, want it unchanged", got)
	}
	got := Limit(strings.Repeat("é", 100), 11)
	if want := strings.Repeat("é", 5) + "… (190 more bytes)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := Limit("ab\xffcd", 4); !utf8.ValidString(got) {
		t.Errorf("got %q, want valid UTF-8", got)
	}
}
