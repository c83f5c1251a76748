package grpcsrv

import (
	"net"
	"sync"
)

// Defaults of the connection caps of a network listener.
const (
	// DefaultMaxConnections caps the open connections of one listener: far
	// above what a federation needs (a coordinator holds one connection to
	// each member; operators and scripts a few each), and far below the
	// usual open-file limit, so that a flood is shed before the process
	// runs out of descriptors.
	DefaultMaxConnections = 1024
	// DefaultMaxConnectionsPerSource caps the open connections from one
	// source IP address, so that one host cannot take the whole listener.
	DefaultMaxConnectionsPerSource = 64
)

// Caps named in Limits.ConnectionRefused, and in the metric of refused
// connections.
const (
	CapListener = "listener" // the listener had MaxConnections open
	CapSource   = "source"   // the source address had MaxConnectionsPerSource open
)

// LimitListener returns lis with the connection caps of l: a connection
// accepted while the listener already has l.MaxConnections open, or its
// source IP address l.MaxConnectionsPerSource, is closed at once, before
// any handshake, and reported to l.ConnectionRefused. The connections
// already open are not affected: their calls are served as before.
func LimitListener(lis net.Listener, l Limits) net.Listener {
	l = l.withDefaults()
	if l.MaxConnections < 0 && l.MaxConnectionsPerSource < 0 {
		return lis
	}
	return &limitListener{Listener: lis, max: l.MaxConnections, perSource: l.MaxConnectionsPerSource,
		refused: l.ConnectionRefused, bySource: map[string]int{}}
}

// limitListener is a net.Listener with connection caps; a cap below 0 is off.
type limitListener struct {
	net.Listener
	max, perSource int
	refused        func(limit string) // nil: none

	mu       sync.Mutex     // protects open and bySource
	open     int            // connections accepted and not yet closed
	bySource map[string]int // open connections by source IP; no zero entries
}

// Accept returns the next connection within the caps, closing those past them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c)
		if limit := l.admit(src); limit != "" {
			if tc, ok := c.(*net.TCPConn); ok {
				// A reset frees the socket at once, where a close would
				// keep it in TIME_WAIT: shedding costs the server nothing
				// that outlasts the accept.
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			if l.refused != nil {
				l.refused(limit)
			}
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(src) }}, nil
	}
}

// admit counts a connection from src in, or returns the cap it would pass.
func (l *limitListener) admit(src string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max >= 0 && l.open >= l.max:
		return CapListener
	case l.perSource >= 0 && l.bySource[src] >= l.perSource:
		return CapSource
	}
	l.open++
	l.bySource[src]++
	return ""
}

// release counts a connection from src out.
func (l *limitListener) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// sourceOf is the IP address a connection comes from (its whole address
// when it has no host part).
func sourceOf(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// limitedConn gives its place back to the listener when it is closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
