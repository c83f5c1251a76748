package boltmap

import "syscall"

// Drop drops the page-table entries of n bytes of the read-only shared
// file mapping at addr (madvise MADV_DONTNEED): the pages leave the resident
// set but stay in the page cache, and the next read faults them back in with
// the same contents. Failure only costs memory, so it is ignored.
func Drop(addr uintptr, n int64) {
	if addr == 0 || n <= 0 {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(n), syscall.MADV_DONTNEED)
}
