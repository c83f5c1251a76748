package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Run listens on listenAddr (mTLS) and, if adminSocketPath is not empty, on
// a unix socket there (mode 0600, no TLS), opens the node, serves until ctx
// is done, and closes the node. A stale socket file is replaced; a socket
// another process still answers on is an error.
func Run(ctx context.Context, cfg Config, listenAddr, adminSocketPath string) (err error) {
	// The listeners come first, so that a port in use leaves no new,
	// empty data file behind.
	var lis, adminLis net.Listener
	if listenAddr != "" {
		lis, err = net.Listen("tcp", listenAddr)
		if err != nil {
			return fmt.Errorf("node: listen: %w", err)
		}
		defer lis.Close()
	}
	if adminSocketPath != "" {
		adminLis, err = ListenAdminSocket(adminSocketPath)
		if err != nil {
			return err
		}
		defer adminLis.Close()
	}
	n, err := Open(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := n.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	attrs := []any{"member", cfg.Member, "data", cfg.DataPath, "version", cfg.Version}
	if lis != nil {
		attrs = append(attrs, "listen", lis.Addr().String())
	}
	if adminLis != nil {
		attrs = append(attrs, "admin_socket", adminSocketPath)
	}
	n.log.Info("node serving", attrs...)
	if cfg.OnServing != nil {
		cfg.OnServing()
	}
	err = n.Serve(ctx, lis, adminLis)
	n.log.Info("node stopped", "member", cfg.Member)
	return err
}

// MaxSocketPath is the longest unix socket path, in bytes, that the
// system can bind: sun_path's 108 bytes less the closing NUL.
const MaxSocketPath = 107

// ListenAdminSocket listens on a unix socket at path that only the node's
// user may use (mode 0600). A socket file nobody answers on is removed
// first; one a live process answers on, or a file that is not a socket, is
// an error.
func ListenAdminSocket(path string) (net.Listener, error) {
	// bind(2) says only "invalid argument" for a path that does not fit
	// sockaddr_un's sun_path with its closing NUL.
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("node: admin socket %s: the path is too long (%d bytes, the limit is %d); use a shorter one", path, len(path), MaxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("node: admin socket %s: a file that is not a socket is in the way", path)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil, fmt.Errorf("node: admin socket %s: another process answers there (is a node already running?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("node: remove stale admin socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("node: admin socket: %w", err)
	}
	lis, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("node: admin socket: %w", err)
	}
	return lis, nil
}

// listenPrivate listens on a unix socket at path whose mode is 0600 from the
// moment anyone else can reach it. bind(2) creates the socket with the
// process's umask, and the umask is the whole process's (changing it would
// race with every file other goroutines create), so the socket is bound in
// a new directory of mode 0700 beside path, set to 0600 there, and renamed
// into place: nobody but the node's user ever sees it with another mode.
// When the temporary path would not fit sun_path, it falls back to binding
// at path and setting the mode right after.
func listenPrivate(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir) // empty once the socket is renamed out of it
	tmp := filepath.Join(dir, "s")
	if len(tmp) > MaxSocketPath {
		return listenChmod(path)
	}
	lis, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := lis.(*net.UnixListener)
	// Close must remove the socket where it ends up, not where it was bound.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = lis.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = lis.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	return &unlinkListener{UnixListener: ul, path: path}, nil
}

// listenChmod binds at path and then sets mode 0600: between the two the
// socket has the umask's mode, and the directory it lives in is the fence.
func listenChmod(path string) (net.Listener, error) {
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, err
	}
	return lis, nil
}

// unlinkListener removes its socket file at path when closed.
type unlinkListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unlinkListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}
