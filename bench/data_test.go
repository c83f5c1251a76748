package main

import "testing"

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
