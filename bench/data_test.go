package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/isa-alliance/fedreport/internal/records"
)

func TestPermutationIsABijection(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1, 2, 3, 1000, 65536, 100_003} {
		p := newPermutation(n, 2020)
		seen := make([]bool, n)
		moved := 0
		for i := range n {
			j := p.at(i)
			if j >= n {
				t.Fatalf("n=%d: at(%d) = %d, out of range", n, i, j)
			}
			if seen[j] {
				t.Fatalf("n=%d: %d is hit twice", n, j)
			}
			seen[j] = true
			if j != i {
				moved++
			}
		}
		if n >= 1000 && moved < int(n)*9/10 {
			t.Errorf("n=%d: only %d of %d positions moved; want a shuffle", n, moved, n)
		}
	}
}

func TestShuffledCSVHasTheSameIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ids := func(shuffle bool) []string {
		path := filepath.Join(dir, fmt.Sprintf("shuffle-%t.csv", shuffle))
		if err := writeCSV(path, 1000, 2020, shuffle); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var got []string
		r := records.NewCSVReader(f, path)
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rec.GetRecordId())
		}
		return got
	}
	gen, shuffled := ids(false), ids(true)
	if slices.Equal(gen, shuffled) {
		t.Fatal("shuffled file has the ids in generated order; want another order")
	}
	slices.Sort(gen)
	slices.Sort(shuffled)
	if !slices.Equal(gen, shuffled) {
		t.Errorf("shuffled ids: got %v..., want the generated ids %v...", shuffled[:3], gen[:3])
	}
}
