//go:build !linux

package node

// dropMapped is a no-op where madvise(MADV_DONTNEED) on a shared file
// mapping is not known to leave the data intact.
func dropMapped(addr uintptr, n int64) {}
