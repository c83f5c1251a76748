// Package stats holds the small measuring tools of the benchmark: latency
// samples with nearest-rank percentiles, and a process's memory as the
// kernel reports it in /proc/<pid>/status.
package stats

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Latencies is a set of latency samples.
type Latencies []time.Duration

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100), or 0
// without samples.
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Summary is the digest of a latency sample set, in milliseconds for JSON.
type Summary struct {
	Count  int     `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// Summarize digests l.
func (l Latencies) Summarize() Summary {
	if len(l) == 0 {
		return Summary{}
	}
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return Summary{
		Count:  len(l),
		P50ms:  Ms(l.Percentile(50)),
		P99ms:  Ms(l.Percentile(99)),
		MaxMs:  Ms(l.Percentile(100)),
		MeanMs: Ms(sum / time.Duration(len(l))),
	}
}

// Ms converts a duration to fractional milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Memory is what /proc/<pid>/status says of a process's memory, in bytes.
type Memory struct {
	// VmRSS is the resident set now; VmHWM its peak over the process's life.
	VmRSS uint64 `json:"vm_rss"`
	VmHWM uint64 `json:"vm_hwm"`
	// RssAnon is the anonymous part of VmRSS (Go heap, stacks); RssFile the
	// file-backed part (the binary, bbolt's mmap of its data file), which
	// the kernel can drop and re-read.
	RssAnon uint64 `json:"rss_anon"`
	RssFile uint64 `json:"rss_file"`
}

// ProcMemory reads /proc/<pid>/status; pid 0 means this process.
func ProcMemory(pid int) (Memory, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	f, err := os.Open(path)
	if err != nil {
		return Memory{}, fmt.Errorf("read process memory: %w", err)
	}
	defer f.Close()
	var m Memory
	fields := map[string]*uint64{"VmRSS:": &m.VmRSS, "VmHWM:": &m.VmHWM, "RssAnon:": &m.RssAnon, "RssFile:": &m.RssFile}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		if p, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return Memory{}, fmt.Errorf("read process memory: %s %q: %w", f[0], f[1], err)
			}
			*p = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("read process memory: %w", err)
	}
	return m, nil
}

// MB converts bytes to mebibytes.
func MB(b uint64) float64 { return float64(b) / (1 << 20) }

// CPUTime is this process's CPU time so far, user and system, all threads.
func CPUTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
