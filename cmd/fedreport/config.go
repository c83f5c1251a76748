package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/internal/yamlconf"
)

// loadStrictYAML decodes a YAML config file into v, refusing unknown keys so
// that a typo never silently falls back to a default.
func loadStrictYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := yamlconf.Decode(b, v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
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
