//go:build unix

package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile serialises the pki commands that write a directory's index and
// revocation list, so two of them at once lose neither's change.
const lockFile = ".pki.lock"

// lockDir takes an exclusive lock on dir until the returned func is called.
// The kernel drops it if the process dies, so a crash leaves no stale lock.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
