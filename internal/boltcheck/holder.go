package boltcheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// HeldBy completes "data file F is in use ..." for a file whose bbolt lock
// another opener holds: "by process 1234 (fedreport coordinator)" when the
// lock's owner can be found (Linux: /proc/locks names the process of every
// flock), else words that name the processes that take that lock.
func HeldBy(path string) string {
	pid := lockOwner(path)
	switch {
	case pid == 0:
		return "by another process (a fedreport node, coordinator, verify or backup?)"
	case pid == os.Getpid():
		return "by this process"
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Sprintf("by process %d", pid)
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	name := filepath.Base(args[0])
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		name += " " + args[1]
	}
	return fmt.Sprintf("by process %d (%s)", pid, name)
}
