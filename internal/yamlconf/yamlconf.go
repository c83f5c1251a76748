// Package yamlconf decodes fedreport's YAML configuration files strictly:
// an unknown key is an error that names it, so a misspelt setting never
// silently falls back to its default.
package yamlconf

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

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
		msgs := make([]string, 0, len(terr.Errors))
		for _, e := range terr.Errors {
			msgs = append(msgs, unknownFieldRE.ReplaceAllString(e, `unknown key "$1"`))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}
