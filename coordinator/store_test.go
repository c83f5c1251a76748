package coordinator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/boltcheck"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// storeRollup stores a finished rollup in state and returns its id.
func storeRollup(t *testing.T, s *store, state fedreportv1.RollupState) string {
	t.Helper()
	r := &fedreportv1.Rollup{State: fedreportv1.RollupState_ROLLUP_STATE_RUNNING, Spec: wholeOperation, StartedAt: timestamppb.Now()}
	if err := s.create(r); err != nil {
		t.Fatal(err)
	}
	r.State = state
	if err := s.finish(r); err != nil {
		t.Fatal(err)
	}
	return r.GetId()
}

func TestListRollupsPagesNewestFirst(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	c := newCoordinator(t, ca, testConfig(t, ca, Member{"FR", closedAddr(t)}))
	c.store.db.NoSync = true // 2400 commits; durability is not under test here.
	states := []fedreportv1.RollupState{
		fedreportv1.RollupState_ROLLUP_STATE_COMPLETE,
		fedreportv1.RollupState_ROLLUP_STATE_PARTIAL,
		fedreportv1.RollupState_ROLLUP_STATE_FAILED,
	}
	var all, partial []string
	for i := range 1200 { // the issue asks for paging over at least 1000
		id := storeRollup(t, c.store, states[i%3])
		all = append(all, id)
		if i%3 == 1 {
			partial = append(partial, id)
		}
	}
	slices.Reverse(all)
	slices.Reverse(partial)

	collect := func(size int32, state fedreportv1.RollupState) (ids []string, pages int) {
		t.Helper()
		token := ""
		for {
			resp, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{PageSize: size, PageToken: token, State: state})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if size > 0 && len(resp.GetRollups()) > int(size) {
				t.Fatalf("page of %d rollups, want at most %d", len(resp.GetRollups()), size)
			}
			for _, r := range resp.GetRollups() {
				ids = append(ids, r.GetId())
			}
			token = resp.GetNextPageToken()
			if token == "" || pages > 1000 {
				return ids, pages
			}
		}
	}

	if got, pages := collect(7, 0); !slices.Equal(got, all) {
		t.Errorf("every rollup by 7: got %d ids (%v...), want %d newest first", len(got), got[:min(3, len(got))], len(all))
	} else if pages != 172 {
		t.Errorf("pages of 7 over 1200: got %d, want 172", pages)
	}
	if got, _ := collect(25, fedreportv1.RollupState_ROLLUP_STATE_PARTIAL); !slices.Equal(got, partial) {
		t.Errorf("partial rollups: got %d ids, want %d newest first", len(got), len(partial))
	}
	if got, pages := collect(0, 0); len(got) != 1200 || pages != 24 {
		t.Errorf("default page size: got %d ids in %d pages, want 1200 in 24 (50 a page)", len(got), pages)
	}
	if got, pages := collect(5000, 0); len(got) != 1200 || pages != 2 {
		t.Errorf("page size 5000: got %d ids in %d pages, want 1200 in 2 (capped at 1000 a page)", len(got), pages)
	}
	if got, _ := collect(10, fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED); len(got) != 0 {
		t.Errorf("interrupted rollups: got %v, want none", got)
	}

	for _, req := range []*fedreportv1.ListRollupsRequest{
		{PageToken: "not a token!"},
		{PageToken: "AAAAAAAAAAA"}, // seq 0
		{PageSize: -1},
		{State: 42},
	} {
		_, err := c.ListRollups(t.Context(), req)
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("ListRollups(%v): got %v, want a *ValidationError", req, err)
		}
	}
}

func TestGetRollupNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	s := tempStore(t)
	id := storeRollup(t, s, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	if _, err := s.get(id, true); err != nil {
		t.Errorf("get %s: %v", id, err)
	}
	if _, err := s.get("r1", true); err != nil {
		t.Errorf("get r1 (unpadded): %v", err)
	}
	for _, id := range []string{"r00000002", "x1", "r", "r-1", "r0"} {
		if _, err := s.get(id, true); !errors.Is(err, ErrRollupNotFound) {
			t.Errorf("get %q: got %v, want ErrRollupNotFound", id, err)
		}
	}
	// An id of the right form that is not stored is told the newest.
	if _, err := s.get("r99", true); err == nil || !strings.Contains(err.Error(), "(the newest is "+id+")") {
		t.Errorf("get r99: got %v, want it to name the newest, %s", err, id)
	}
}

func TestGetRollupOnAnEmptyStoreSaysNoneIsStored(t *testing.T) {
	t.Parallel()
	s := tempStore(t)
	if _, err := s.get("r1", true); !errors.Is(err, ErrRollupNotFound) || !strings.Contains(err.Error(), "none is stored yet") {
		t.Errorf("get r1 of an empty store: got %v, want ErrRollupNotFound saying none is stored", err)
	}
}

func TestFinishedRollupsAreNeverModified(t *testing.T) {
	t.Parallel()
	s := tempStore(t)
	id := storeRollup(t, s, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	err := s.finish(&fedreportv1.Rollup{Id: id, State: fedreportv1.RollupState_ROLLUP_STATE_PARTIAL})
	if !errors.Is(err, ErrRollupFinished) {
		t.Errorf("finish twice: got %v, want ErrRollupFinished", err)
	}
	got, err := s.get(id, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Errorf("state: got %v, want COMPLETE", got.GetState())
	}
}

func TestFinishGoesByTheRunningMarker(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.db")
	s, _, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &fedreportv1.Rollup{State: fedreportv1.RollupState_ROLLUP_STATE_RUNNING, Spec: wholeOperation, StartedAt: timestamppb.Now()}
	if err := s.create(r); err != nil {
		t.Fatal(err)
	}
	r.State = fedreportv1.RollupState_ROLLUP_STATE_COMPLETE
	if err := s.finish(r); err != nil {
		t.Fatal(err)
	}
	if got, err := s.get(r.GetId(), true); err != nil || !proto.Equal(got, r) {
		t.Errorf("finished rollup: got %v, %v; want %v", got, err, r)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRunning).Stats().KeyN != 0 {
			t.Error("running markers after finish: got some, want none")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.finish(&fedreportv1.Rollup{Id: rollupID(99), State: fedreportv1.RollupState_ROLLUP_STATE_FAILED}); !errors.Is(err, ErrRollupNotFound) {
		t.Errorf("finish of a rollup never created: got %v, want ErrRollupNotFound", err)
	}

	// A rollup openStore interrupted has lost its marker: a late finish (of
	// a process that did not know) is refused and the record kept.
	running := &fedreportv1.Rollup{State: fedreportv1.RollupState_ROLLUP_STATE_RUNNING, Spec: wholeOperation}
	if err := s.create(running); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, interrupted, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if !slices.Equal(interrupted, []string{running.GetId()}) {
		t.Fatalf("interrupted: got %v, want [%s]", interrupted, running.GetId())
	}
	running.State = fedreportv1.RollupState_ROLLUP_STATE_COMPLETE
	if err := s.finish(running); !errors.Is(err, ErrRollupFinished) {
		t.Errorf("finish of an interrupted rollup: got %v, want ErrRollupFinished", err)
	}
	if got, err := s.get(running.GetId(), true); err != nil || got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED {
		t.Errorf("interrupted rollup after a late finish: got %v, %v; want INTERRUPTED", got.GetState(), err)
	}
}

func TestReopenMarksRunningRollupsInterrupted(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, td)
	cfg := testConfig(t, ca, Member{"FR", closedAddr(t)})

	// A previous process stored one finished rollup and died running another.
	s, _, err := openStore(cfg.DataPath)
	if err != nil {
		t.Fatal(err)
	}
	done := storeRollup(t, s, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	running := &fedreportv1.Rollup{State: fedreportv1.RollupState_ROLLUP_STATE_RUNNING, Spec: wholeOperation}
	if err := s.create(running); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	c := newCoordinator(t, ca, cfg)
	got, err := c.GetRollup(t.Context(), running.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED || got.GetFailureReason() != "coordinator restarted while the rollup ran" {
		t.Errorf("running rollup after restart: got %v %q, want INTERRUPTED with the restart reason", got.GetState(), got.GetFailureReason())
	}
	if got, err := c.GetRollup(t.Context(), done); err != nil || got.GetState() != fedreportv1.RollupState_ROLLUP_STATE_COMPLETE {
		t.Errorf("finished rollup after restart: got %v, %v; want COMPLETE", got.GetState(), err)
	}
	page, err := c.ListRollups(t.Context(), &fedreportv1.ListRollupsRequest{State: fedreportv1.RollupState_ROLLUP_STATE_INTERRUPTED})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetRollups()) != 1 || page.GetRollups()[0].GetId() != running.GetId() {
		t.Errorf("interrupted rollups: got %v, want [%s]", page.GetRollups(), running.GetId())
	}
	// New rollups continue the sequence.
	r, err := c.StartRollup(t.Context(), wholeOperation, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GetId(), "r00000003"; got != want {
		t.Errorf("next id: got %s, want %s", got, want)
	}
}

func TestOpenRefusesAnUnknownSchemaVersion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchemaVersion, binary.BigEndian.AppendUint32(nil, schemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openStore(path); !errors.Is(err, ErrSchemaVersion) {
		t.Errorf("open: got %v, want ErrSchemaVersion", err)
	}
}

// TestOpenRefusesADamagedFile damages a real coordinator file the ways
// bbolt cannot open without faulting (boltcheck.Guard) and checks that
// opening it is refused with what to do.
func TestOpenRefusesADamagedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.db")
	s, _, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.db.NoSync = true // 300 commits; durability is not under test here
	for range 300 {
		storeRollup(t, s, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	for name, damage := range map[string]func([]byte) []byte{
		// Half of the pages in use: bbolt's file may run past them.
		"truncated to half": func(b []byte) []byte {
			m, err := boltcheck.ReadMeta(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			return b[:m.HWM/2*page]
		},
		"truncated to two pages": func(b []byte) []byte { return b[:2*page] },
		"both meta pages overwritten": func(b []byte) []byte {
			for i := range 2 * page {
				b[i] = 0xAB
			}
			return b
		},
	} {
		bad := filepath.Join(t.TempDir(), "c.db")
		if err := os.WriteFile(bad, damage(slices.Clone(good)), 0o600); err != nil {
			t.Fatal(err)
		}
		s, _, err := openStore(bad)
		if err == nil {
			_, _, lerr := s.list(1000, 0, fedreportv1.RollupState_ROLLUP_STATE_UNSPECIFIED, false)
			_ = s.close()
			t.Errorf("%s: opened (and listed: %v)", name, lerr)
			continue
		}
		if !strings.Contains(err.Error(), "restore it from a backup") {
			t.Errorf("%s: got %v, want a refusal saying what to do", name, err)
		}
	}
}

// tempStore opens a coordinator store in a fresh file of the test's temp
// directory, closed when the test ends.
func tempStore(t *testing.T) *store {
	t.Helper()
	s, _, err := openStore(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}
