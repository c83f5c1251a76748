package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// runCheck is ingest --check: it reads the files as ingest would, with
// every rule the node applies to one record and the one it applies to a
// stream (each record_id once), but sends nothing and needs no node. Every
// problem goes to errorsFile when one is given; the first 20 are printed.
// Any problem makes it fail (exit code 1).
func runCheck(o ingestOptions, files []string, stdin io.Reader, stdout io.Writer) error {
	var errw *bufio.Writer
	if o.errorsFile != "" {
		f, err := os.Create(o.errorsFile)
		if err != nil {
			return fmt.Errorf("--errors-file: %w", err)
		}
		defer f.Close()
		errw = bufio.NewWriter(f)
	}
	var (
		problems int
		listed   []string
		checked  uint64
		inputs   []input
	)
	note := func(msg string) {
		problems++
		if len(listed) < maxListedErrors {
			listed = append(listed, msg)
		}
		if errw != nil {
			errw.WriteString(msg + "\n")
		}
	}
	for _, name := range files {
		in := inspectInput(name, stdin)
		inputs = append(inputs, in)
		rr, closer, err := openRecords(in.name, o.format, stdin, nil)
		if err != nil {
			return err
		}
		err = readRecords(rr, func(*fedreportv1.Record) error { checked++; return nil }, func(e *records.LineError) { note(e.Error()) })
		closer.Close()
		if err != nil {
			return err
		}
	}
	// Duplicates across every file, as the node would refuse them; stdin
	// cannot be read twice, so with - the node is left to find them.
	if dups, total, ok := listDuplicates(inputs, o.format, maxDuplicatesChecked); ok && total > 0 {
		for _, d := range dups {
			note(fmt.Sprintf("%s:%d: record_id %s appears again, first at %s:%d (one ingest carries each record_id once)",
				inputs[d.at.file].source, d.at.line, echo.Quote(d.id), inputs[d.firstAt.file].source, d.firstAt.line))
		}
		problems += total - len(dups)
	}
	if errw != nil {
		if err := errw.Flush(); err != nil {
			return fmt.Errorf("--errors-file: %w", err)
		}
	}
	if problems == 0 {
		fmt.Fprintf(stdout, "checked %s in %s: no problems; nothing was sent\n", plural(checked, "record"), plural(uint64(len(files)), "file"))
		return nil
	}
	msg := strings.Join(listed, "\n")
	if problems > len(listed) {
		msg += fmt.Sprintf("\n... and %d more", problems-len(listed))
	}
	where := ""
	if o.errorsFile != "" {
		where = fmt.Sprintf(" (all of them in %s)", o.errorsFile)
	}
	return fmt.Errorf("%s\n%d problem(s) in %s checked%s; nothing was sent. Fix them and check again", msg, problems, plural(uint64(len(files)), "file"), where)
}

// maxDuplicatesChecked is how many duplicates ingest --check words one by
// one (in --errors-file); more are counted.
const maxDuplicatesChecked = 100000
