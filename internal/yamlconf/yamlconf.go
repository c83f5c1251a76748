// Package yamlconf decodes fedreport's YAML configuration files strictly:
// an unknown key is an error that names it, so a misspelt setting never
// silently falls back to its default.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
	// typeErrorRE matches yaml's "line 6: cannot unmarshal !!int `10` into
	// time.Duration": the line, the value's tag and text, the Go type.
	typeErrorRE = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// wants says, for a Go type a key decodes into, what to write.
var wants = map[string]string{
	"time.Duration": "a duration such as 10s",
	"bool":          "true or false",
	"string":        "text",
	"float64":       "a number such as 0.5",
	"float32":       "a number such as 0.5",
}

// Decode decodes b into v, refusing unknown keys. An empty document leaves
// v as it is.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var terr *yaml.TypeError
	if errors.As(err, &terr) {
		var doc yaml.Node
		_ = yaml.Unmarshal(b, &doc) // it decoded as far as the type errors
		msgs := make([]string, 0, len(terr.Errors))
		for _, e := range terr.Errors {
			e = unknownFieldRE.ReplaceAllString(e, `unknown key "$1"`)
			msgs = append(msgs, explainType(&doc, e))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// explainType rewrites yaml's message for a value of the wrong type, which
// names neither the key nor what to write, as "line 6: member_timeout: want
// a duration such as 10s, not 10". Other messages are returned as they are.
func explainType(doc *yaml.Node, msg string) string {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	tag, value, typ := m[2], m[3], m[4]
	want, ok := wants[typ]
	switch {
	case ok:
	case strings.HasPrefix(typ, "uint"):
		want = "a whole number, 0 or more"
	case strings.HasPrefix(typ, "int"):
		want = "a whole number"
	case strings.HasPrefix(typ, "[]"):
		want = "a list"
	case strings.HasPrefix(typ, "map[") || strings.Contains(typ, "."):
		want = "a mapping of keys"
	default:
		want = typ
	}
	got := value
	if got == "" {
		got = map[string]string{"!!seq": "a list", "!!map": "a mapping"}[tag]
	}
	if got == "" {
		got = tag
	}
	key := keyAt(doc, line, tag, &value)
	if key == "" {
		// yaml shortens a long value in its message.
		key = keyAt(doc, line, tag, nil)
	}
	if key == "" {
		return fmt.Sprintf("line %d: want %s, not %s", line, want, got)
	}
	return fmt.Sprintf("line %d: %s: want %s, not %s", line, key, want, got)
}

// keyAt returns the key of the mapping entry whose value, on line and with
// tag (and, for a scalar, text *value unless value is nil), is the one yaml
// could not decode; "" when there is none.
func keyAt(n *yaml.Node, line int, tag string, value *string) string {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Line == line && v.ShortTag() == tag && (value == nil || v.Kind != yaml.ScalarNode || v.Value == *value) {
				return k.Value
			}
		}
	}
	for _, c := range n.Content {
		if key := keyAt(c, line, tag, value); key != "" {
			return key
		}
	}
	return ""
}
