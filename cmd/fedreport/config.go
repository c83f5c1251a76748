package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// loadStrictYAML decodes a YAML config file into v, refusing unknown keys so
// that a typo never silently falls back to a default.
func loadStrictYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// setFromConfig applies config values to flags the command line did not set,
// so flags always win over the file.
func setFromConfig(fs *pflag.FlagSet, values map[string]string) error {
	for name, v := range values {
		if v == "" || fs.Changed(name) {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("config %s: %w", name, err)
		}
	}
	return nil
}
