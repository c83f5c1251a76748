package main

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// nodeFileWithDisclosures makes a stopped node's data file holding a few
// records and three disclosures, and returns its path.
func nodeFileWithDisclosures(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fr.db")
	s, err := node.OpenStore(path, node.StoreOptions{Member: "FR", Policy: node.Policy{MinCellCount: 3}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.BeginIngest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	err = in.Add("fr.csv", []*fedreportv1.Record{
		{RecordId: "FR-1", Metric: fedreportv1.Metric_METRIC_ARRESTS, Date: "2020-01-02"},
		{RecordId: "FR-2", Metric: fedreportv1.Metric_METRIC_ARRESTS, Date: "2020-01-03", Quantity: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, rollup := range []string{"r1", "r2", "r3"} {
		req := &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31", RollupId: rollup, RollupStartedAt: rollupStarted}
		if _, err := s.Aggregate(req, "spiffe://isa/coordinator/main"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// editDisclosure rewrites disclosure seq of the file at path: edit changes
// the entry; forge recomputes its hash as a forger would.
func editDisclosure(t *testing.T, path string, seq uint64, edit func(*fedreportv1.DisclosureEntry), forge bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("disclosures"))
		key := binary.BigEndian.AppendUint64(nil, seq)
		v := b.Get(key)
		e := new(fedreportv1.DisclosureEntry)
		if err := proto.Unmarshal(v[sha256.Size:], e); err != nil {
			return err
		}
		edit(e)
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		if err != nil {
			return err
		}
		hash := v[:sha256.Size]
		if forge {
			sum := sha256.Sum256(body)
			hash = sum[:]
		}
		return b.Put(key, append(append([]byte(nil), hash...), body...))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesATamperedDisclosure(t *testing.T) {
	t.Parallel()
	clean := nodeFileWithDisclosures(t)
	if out := mustRunCLI(t, "verify", "--data", clean); !strings.Contains(out, "3 disclosures") || !strings.Contains(out, "ok: counters equal the records, disclosure chain intact") {
		t.Fatalf("clean file: %s", out)
	}
	original, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	hideCaller := func(e *fedreportv1.DisclosureEntry) { e.Caller = "spiffe://isa/operator/nobody" }
	for _, tc := range []struct {
		name  string
		edit  func(path string)
		wants []string
	}{
		{"a caller rewritten", func(p string) { editDisclosure(t, p, 2, hideCaller, false) },
			[]string{"disclosure 2: entry hash mismatch"}},
		{"a caller rewritten and the entry's hash recomputed", func(p string) { editDisclosure(t, p, 2, hideCaller, true) },
			[]string{"disclosure 3: prev_hash does not match the entry hash of disclosure 2"}},
		{"a disclosed count lowered", func(p string) {
			editDisclosure(t, p, 1, func(e *fedreportv1.DisclosureEntry) { e.GetCells()[0].Count-- }, false)
		}, []string{"disclosure 1: entry hash mismatch"}},
		{"an entry removed", func(p string) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("disclosures")).Delete(binary.BigEndian.AppendUint64(nil, 2))
			}); err != nil {
				t.Fatal(err)
			}
		}, []string{"disclosure 3: out of sequence (the log jumps from 1 to 3)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fr.db")
			if err := os.WriteFile(path, original, 0o600); err != nil {
				t.Fatal(err)
			}
			tc.edit(path)
			out, _, err := runCLI(t, t.Context(), "verify", "--data", path)
			if err == nil {
				t.Fatalf("verify of a tampered file succeeded:\n%s", out)
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) || !strings.Contains(out, want) {
					t.Errorf("got error %q and report\n%s\nwant both to name %q", err, out, want)
				}
			}
		})
	}
}

// TestVerifySaysACoordinatorsFileIsNotANodes runs verify on a stopped
// coordinator's data file: it says what the file is, rather than listing
// what a node's file would have, and exits non-zero.
func TestVerifySaysACoordinatorsFileIsNotANodes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "main.db")
	if err := openCoordinatorFile(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, t.Context(), "verify", "--data", path)
	want := "it is a coordinator's data file, not a node's"
	if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), want) {
		t.Errorf("got error %v, want a non-zero exit with an error containing %q", err, want)
	}
	if !strings.Contains(out, path+": not checked: "+want) || strings.Contains(out, "problem(s)") {
		t.Errorf("got report\n%s\nwant it to say %q and list no problems", out, want)
	}
}

// rollupStarted is when the tests' rollups started: a coordinator asks
// a member only within a running rollup, named with its start.
var rollupStarted = timestamppb.Now()
