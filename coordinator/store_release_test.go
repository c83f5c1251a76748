//go:build linux

package coordinator

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/isa-alliance/fedreport/internal/boltmap"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// mappedRSS returns how much of the mapping that starts at addr is in this
// process's resident set (/proc/self/smaps), in bytes.
func mappedRSS(t *testing.T, addr uintptr) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", addr)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, start) {
			in = true
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return 0
}

func TestStoreDropsTheMappedPagesItRead(t *testing.T) {
	t.Parallel()
	var releasing atomic.Bool // off: the releaser runs but drops nothing
	released := make(chan struct{}, 1)
	s, _, err := openStoreWith(filepath.Join(t.TempDir(), "c.db"), func(db *bolt.DB) {
		if !releasing.Load() {
			return
		}
		boltmap.Release(db)
		select {
		case released <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.db.NoSync = true
	var ids []string
	for range 100 {
		ids = append(ids, storeFinished(t, s, bigRollup(200, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)))
	}
	for _, id := range ids {
		if _, err := s.get(id, true); err != nil {
			t.Fatal(err)
		}
	}
	addr := s.db.Info().Data
	// 100 rollups of ~19 KB were read through the mapping.
	if got := mappedRSS(t, addr); got < 1<<20 {
		t.Fatalf("mapped RSS after reading every rollup: got %d bytes, want at least 1 MiB (the test measures nothing)", got)
	}

	releasing.Store(true)
	// The BASIC view of ids[0] is not cached yet: it is read from the file.
	if _, err := s.get(ids[0], false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-t.Context().Done():
		t.Fatal("no release after a read")
	}
	if got := mappedRSS(t, addr); got > 64<<10 {
		t.Errorf("mapped RSS after the release: got %d bytes, want at most 64 KiB", got)
	}
}
