package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v3"

	"github.com/isa-alliance/fedreport/internal/echo"
)

// buildInfo is what `fedreport version` prints: where the binary comes from.
type buildInfo struct {
	// Version is the -X main.version of the build, else the module version
	// (a tag for `go install ...@v1.2.3`, "(devel)" for a local build).
	Version string `json:"version" yaml:"version"`
	// Revision is the VCS commit the binary was built from, when known;
	// Modified says the work tree had uncommitted changes.
	Revision string `json:"revision,omitempty" yaml:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty" yaml:"modified,omitempty"`
	// CommitTime is the commit's time (RFC 3339), when known.
	CommitTime string `json:"commit_time,omitempty" yaml:"commit_time,omitempty"`
	GoVersion  string `json:"go_version" yaml:"go_version"`
	Platform   string `json:"platform" yaml:"platform"`
}

// readBuildInfo reads the binary's build information (runtime/debug).
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildInfoOf(bi, version)
}

// buildInfoOf is readBuildInfo for given build information (nil when the
// binary has none) and -X main.version.
func buildInfoOf(bi *debug.BuildInfo, ldVersion string) buildInfo {
	out := buildInfo{Version: ldVersion, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return out
	}
	out.GoVersion = bi.GoVersion
	if ldVersion == "dev" && bi.Main.Version != "" {
		out.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		case "vcs.time":
			out.CommitTime = s.Value
		}
	}
	return out
}

// Short is the software version a node or coordinator advertises
// (DescribeNode): the version and, when known, the first 12 digits of the
// revision.
func (b buildInfo) Short() string {
	if b.Revision == "" {
		return b.Version
	}
	s := b.Version + "+" + b.Revision[:min(12, len(b.Revision))]
	if b.Modified {
		s += "-modified"
	}
	return s
}

// String is the one line of --version and of the servers' start log.
func (b buildInfo) String() string {
	s := b.Version
	if b.Revision != "" {
		s += " (revision " + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + b.GoVersion + " " + b.Platform
}

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o table|json|yaml]",
		Short: "Print the version of this binary: module version, VCS revision, Go version",
		Long: `Print where this binary comes from: its version (set at build time, or the
module version: a tag for go install ...@v1.2.3, "(devel)" for a local build),
the VCS revision and commit time it was built from (when built from a git
checkout) and whether the checkout had uncommitted changes, the Go version and
the platform. fedreport --version prints the same on one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printBuildInfo(cmd.OutOrStdout(), output, readBuildInfo())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// printBuildInfo prints b in format.
func printBuildInfo(w io.Writer, format string, b buildInfo) error {
	switch format {
	case "json":
		out, err := json.MarshalIndent(b, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	case "yaml":
		return yaml.NewEncoder(w).Encode(b)
	case "table":
	default:
		return fmt.Errorf("%s is not an output format (want table, json or yaml)", echo.Quote(format))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "VERSION\t%s\n", b.Version)
	rev := orDash(b.Revision)
	if b.Modified {
		rev += " (modified)"
	}
	fmt.Fprintf(tw, "REVISION\t%s\n", rev)
	fmt.Fprintf(tw, "COMMIT_TIME\t%s\n", orDash(b.CommitTime))
	fmt.Fprintf(tw, "GO\t%s\n", b.GoVersion)
	fmt.Fprintf(tw, "PLATFORM\t%s\n", b.Platform)
	return tw.Flush()
}
