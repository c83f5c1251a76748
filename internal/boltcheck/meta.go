// Package boltcheck checks a bbolt file by reading it, before bbolt maps
// it: bbolt trusts the page ids and lengths it finds, and one damaged by the
// disk or an operator sends it outside its mapping, where the fault kills
// the process with no error to report. Guard is the cheap check a node and a
// coordinator make at every start (the meta pages and the file's length);
// OpenWalked reads every page and is for `fedreport verify` only.
package boltcheck

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt internal/common): a 16-byte
// page header, then magic, version, page size, flags, the root bucket
// (root page, sequence), the freelist page, the high-water page id, the
// transaction id and an FNV-64a checksum of the fields before it.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltMetaLen    = 4 + 4 + 4 + 4 + 16 + 8 + 8 + 8 // up to the checksum
)

// NoFreelist is Meta.Freelist when the commits did not write the freelist
// (bbolt's NoFreelistSync, or a crash since the last clean close).
const NoFreelist = ^uint64(0)

// Meta is what the checks need of the meta page bbolt opens a file with.
type Meta struct {
	PageSize uint32
	Root     uint64 // the root bucket's page
	Freelist uint64 // NoFreelist when the commits did not write it
	HWM      uint64 // pages in use are below it
	TxID     uint64
}

// ReadMeta returns the meta page bbolt opens: of the two, the valid one
// with the higher transaction id.
func ReadMeta(r io.ReaderAt) (Meta, error) {
	var best Meta
	ok := false
	buf := make([]byte, boltPageHeader+boltMetaLen+8)
	pageSize := int64(0)
	for i := range 2 {
		off := int64(i) * pageSize
		if i == 1 && pageSize == 0 {
			break
		}
		if _, err := r.ReadAt(buf, off); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		le := binary.LittleEndian
		if le.Uint32(m[0:]) != boltMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(m[:boltMetaLen])
		if h.Sum64() != le.Uint64(m[boltMetaLen:]) {
			continue
		}
		ps := le.Uint32(m[8:])
		if i == 0 {
			pageSize = int64(ps)
		}
		cur := Meta{PageSize: ps, Root: le.Uint64(m[16:]), Freelist: le.Uint64(m[32:]), HWM: le.Uint64(m[40:]), TxID: le.Uint64(m[48:])}
		if !ok || cur.TxID > best.TxID {
			best, ok = cur, true
		}
		if i == 0 && pageSize == 0 {
			break
		}
	}
	if !ok {
		return best, errors.New("no valid bbolt meta page (not a fedreport data file, or its header is damaged)")
	}
	return best, nil
}
