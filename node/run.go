package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
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
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("node: admin socket: %w", err)
	}
	// Between Listen and Chmod the socket has the umask's mode; the
	// directory it lives in is the real fence (see the operator docs).
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("node: admin socket: %w", err)
	}
	return lis, nil
}
