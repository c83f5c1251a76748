package node

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestTheAdminSocketAppearsWithItsModeSet watches the socket's directory
// with inotify while the node listens: the socket must never be created at
// its path (bind(2) would create it with the umask's mode, for anyone to
// connect to until a chmod), only moved there, already of mode 0600. Close
// removes it and leaves nothing else behind.
func TestTheAdminSocketAppearsWithItsModeSet(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fr.sock")
	lis, err := ListenAdminSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel queues an event within the call that causes it: all are
	// there once ListenAdminSocket has returned.
	events := map[string]uint32{}
	buf := make([]byte, 64<<10)
	n, err := syscall.Read(fd, buf)
	if err != nil {
		t.Fatalf("read inotify events: %v", err)
	}
	for off := 0; off+syscall.SizeofInotifyEvent <= n; {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		events[string(name)] |= ev.Mask
		off += syscall.SizeofInotifyEvent + int(ev.Len)
	}
	if m := events["fr.sock"]; m&syscall.IN_CREATE != 0 || m&syscall.IN_MOVED_TO == 0 {
		t.Errorf("fr.sock: got inotify events %#x, want it moved into place (IN_MOVED_TO), never created there (IN_CREATE)", m)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket: got %v, %v; want a socket of mode 0600", fi.Mode(), err)
	}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("after Close the directory holds %v (%v), want nothing", left, err)
	}
}
