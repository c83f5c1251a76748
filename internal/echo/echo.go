// Package echo is the one place that decides how fedreport quotes a value
// it received back to whoever sent it, in an error message or a
// google.rpc.BadRequest field violation: escaped, so that no control
// character or invalid UTF-8 reaches a terminal or a log, and short, so
// that a peer sending a megabyte in a field does not get it back (several
// times over, once escaped) and cannot make a server build such answers.
package echo

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxBytes is how much of a value Quote shows, in bytes of the value.
const MaxBytes = 32

// MaxMessage bounds a whole error message or field description built by a
// server, in bytes, as a backstop behind Quote: Limit cuts anything longer.
const MaxMessage = 4 << 10

// Quote returns s quoted as strconv.Quote does (Go escapes, valid UTF-8,
// printable) when it has at most MaxBytes bytes. A longer s is shown by its
// first MaxBytes bytes, cut at a character boundary, an ellipsis and its
// length: "aaaaaaaa…" (1048576 bytes). The result is at most a few dozen
// characters (four per byte shown, at worst) whatever s is.
func Quote(s string) string {
	if len(s) <= MaxBytes {
		return strconv.Quote(s)
	}
	cut := MaxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) && MaxBytes-cut < utf8.UTFMax {
		cut--
	}
	q := strconv.Quote(s[:cut])
	return q[:len(q)-1] + `…" (` + strconv.Itoa(len(s)) + " bytes)"
}

// Name returns s as it is when it is a short, printable name (a file name,
// an address) that reads better without quotes, and Quote(s) otherwise.
func Name(s string) string {
	if len(s) > 4*MaxBytes || !printable(s) {
		return Quote(s)
	}
	return s
}

// Limit returns msg when it has at most max bytes, and otherwise its first
// max bytes (cut at a character boundary, invalid UTF-8 replaced) followed
// by how much was left out. Servers pass every status message and field
// description through it, so that no error path can echo a request whole.
func Limit(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(msg[cut]) && max-cut < utf8.UTFMax {
		cut--
	}
	return strings.ToValidUTF8(msg[:cut], "\uFFFD") + "… (" + strconv.Itoa(len(msg)-cut) + " more bytes)"
}

func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}
