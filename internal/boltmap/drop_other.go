//go:build !linux

package boltmap

// Drop is a no-op where madvise(MADV_DONTNEED) on a shared file
// mapping is not known to leave the data intact.
func Drop(addr uintptr, n int64) {}
