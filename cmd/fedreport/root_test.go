package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelpShowsEachFlagsValueType renders help as a user reads it: pflag
// takes the first `quoted` text of a flag's usage as the name of its value,
// so a command quoted there would stand in for the value's type.
func TestHelpShowsEachFlagsValueType(t *testing.T) {
	t.Parallel()
	out := mustRunCLI(t, "pki", "revoke", "--help")
	var line string
	for l := range strings.Lines(out) {
		if strings.Contains(l, "--serial") {
			line = strings.TrimSpace(l)
		}
	}
	if want := "--serial string"; !strings.HasPrefix(line, want+" ") {
		t.Errorf("pki revoke --help: got %q, want the line to start with %q", line, want)
	}

	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				name, _ := pflag.UnquoteUsage(f)
				t.Errorf("%s --%s: help shows its value as %q; quote with something other than backticks", cmd.CommandPath(), f.Name, name)
			}
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}
