package floor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestCommitsTimesEveryRoundAndLeavesNoFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lat, err := Commits(context.Background(), Options{Dir: dir, Files: 3, Warmup: 2, Rounds: 5, EntryBytes: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 5 {
		t.Fatalf("got %d latencies, want one per timed round (5)", len(lat))
	}
	for i, d := range lat {
		if d <= 0 {
			t.Errorf("round %d took %v", i, d)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("left %d entries in %s, want none", len(left), dir)
	}
}

func TestCommitsRefusesNothingToDoAndStopsWithItsContext(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{Files: 0, Rounds: 1, EntryBytes: 1}, {Files: 1, Rounds: 0, EntryBytes: 1}, {Files: 1, Rounds: 1}} {
		o.Dir = t.TempDir()
		if _, err := Commits(context.Background(), o); err == nil || !strings.Contains(err.Error(), "want at least one") {
			t.Errorf("%+v: got %v, want a refusal", o, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Commits(ctx, Options{Dir: t.TempDir(), Files: 2, Rounds: 3, EntryBytes: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
}

// TestAppendsAreCommittedEntries checks that what the floor times is a
// commit of the whole entry under the next key, readable after a reopen.
func TestAppendsAreCommittedEntries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	entry := []byte(strings.Repeat("e", 9000))
	for range 3 {
		if err := l.append(entry); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if len(v) != len(entry) {
				t.Errorf("key %x holds %d bytes, want %d", k, len(v), len(entry))
			}
			keys = append(keys, string(k))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"\x00\x00\x00\x00\x00\x00\x00\x01", "\x00\x00\x00\x00\x00\x00\x00\x02", "\x00\x00\x00\x00\x00\x00\x00\x03"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("keys %q, want %q", keys, want)
	}
}
