package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"os"
	"time"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// The joint operation of DESIGN.md: every synthetic record falls in it and
// every query asks for all of it.
var (
	periodFrom = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	periodTo   = time.Date(2020, 9, 30, 0, 0, 0, 0, time.UTC)
)

const (
	periodFromString = "2020-01-01"
	periodToString   = "2020-09-30"
)

// benchMember is the member whose node the ingest and Aggregate steps use.
const benchMember = "FR"

// writeCSV writes n synthetic records of benchMember, as `fedreport gen`
// makes them, to path. With shuffle, the i-th record gets the id of record
// perm(i) instead of i: the same ids and field values, in random key order.
func writeCSV(path string, n int, seed int64, shuffle bool) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := records.NewCSVWriter(bw)
	p := newPermutation(uint64(n), uint64(seed))
	var i uint64
	err = records.Gen(benchMember, n, seed, periodFrom, periodTo, func(r *fedreportv1.Record) error {
		if shuffle {
			// The generator's id format, "FR-000000001", for another n.
			r.RecordId = fmt.Sprintf("%s-%09d", benchMember, 1+p.at(i))
		}
		i++
		return cw.Write(r)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return bw.Flush()
}

// permutation is a pseudo-random bijection of [0, n): a four-round Feistel
// network over the smallest even power of two holding n, cycle-walked back
// into range. It needs no memory, so a 10M-record file is shuffled as it is
// written.
type permutation struct {
	n        uint64
	halfBits uint
	mask     uint64
	keys     [4]uint64
}

func newPermutation(n, seed uint64) permutation {
	b := uint(bits.Len64(max(n-1, 1)))
	b += b & 1
	p := permutation{n: n, halfBits: b / 2, mask: 1<<(b/2) - 1}
	for i := range p.keys {
		seed = splitmix64(seed)
		p.keys[i] = seed
	}
	return p
}

func (p permutation) at(i uint64) uint64 {
	x := i
	for {
		l, r := x>>p.halfBits, x&p.mask
		for _, k := range p.keys {
			l, r = r, l^(splitmix64(r^k)&p.mask)
		}
		x = l<<p.halfBits | r
		if x < p.n {
			return x
		}
	}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
