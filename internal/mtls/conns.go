package mtls

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// DefaultRecheckEvery is how often ServerCredentials checks the
// certificates of a listener's open connections again: how long after a
// revocation list that names a peer reaches the server the peer's open
// connections are closed.
const DefaultRecheckEvery = 2 * time.Second

// ServerCredentials returns the gRPC transport credentials of a listener
// with cfg (ServerConfig): identity.ServerCredentials, which also checks
// every open connection's peer again every DefaultRecheckEvery, as a new
// handshake would (cfg's VerifyConnection: the identity, and the current
// revocation list, re-read when its file changed), and closes the
// connections whose peer it now refuses. A revocation so reaches
// connections that are already open within seconds, rather than when the
// connection's maximum age ends it.
func ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return ServerCredentialsEvery(cfg, DefaultRecheckEvery)
}

// ServerCredentialsEvery is ServerCredentials checking every d.
func ServerCredentialsEvery(cfg *tls.Config, d time.Duration) credentials.TransportCredentials {
	return &recheckCreds{TransportCredentials: identity.ServerCredentials(cfg), cfg: cfg, every: d, conns: map[*checkedConn]struct{}{}}
}

// recheckCreds keeps the open connections of a listener and, while there
// are any, checks them every `every` in a goroutine of its own.
type recheckCreds struct {
	credentials.TransportCredentials
	cfg   *tls.Config
	every time.Duration

	mu    sync.Mutex // protects conns and stop
	conns map[*checkedConn]struct{}
	stop  chan struct{} // closed to end the checking goroutine; nil when none runs
}

// checkedConn is an open connection with the TLS state of its handshake.
type checkedConn struct {
	net.Conn
	state tls.ConnectionState
	c     *recheckCreds
	once  sync.Once
}

func (cc *checkedConn) Close() error {
	cc.once.Do(func() { cc.c.remove(cc) })
	return cc.Conn.Close()
}

func (c *recheckCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, ai, err
	}
	var state tls.ConnectionState
	switch info := ai.(type) {
	case identity.AuthInfo:
		state = info.State
	case credentials.TLSInfo:
		state = info.State
	default:
		return conn, ai, nil
	}
	cc := &checkedConn{Conn: conn, state: state, c: c}
	c.add(cc)
	return cc, ai, nil
}

func (c *recheckCreds) Clone() credentials.TransportCredentials {
	return ServerCredentialsEvery(c.cfg, c.every)
}

func (c *recheckCreds) add(cc *checkedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns[cc] = struct{}{}
	if c.stop == nil {
		c.stop = make(chan struct{})
		go c.check(c.stop)
	}
}

// remove forgets a closed connection; the checking goroutine ends with the
// last one, so that a server with no connections runs none.
func (c *recheckCreds) remove(cc *checkedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.conns, cc)
	if len(c.conns) == 0 && c.stop != nil {
		close(c.stop)
		c.stop = nil
	}
}

func (c *recheckCreds) check(stop chan struct{}) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		verify := c.verifier()
		if verify == nil {
			continue
		}
		c.mu.Lock()
		conns := make([]*checkedConn, 0, len(c.conns))
		for cc := range c.conns {
			conns = append(conns, cc)
		}
		c.mu.Unlock()
		for _, cc := range conns {
			if verify(cc.state) != nil {
				_ = cc.Close()
			}
		}
	}
}

// verifier returns the check a new handshake would make now, or nil when
// cfg makes none.
func (c *recheckCreds) verifier() func(tls.ConnectionState) error {
	cfg := c.cfg
	if cfg.GetConfigForClient != nil {
		// ServerConfig builds each handshake's configuration from the
		// source's current files; it does not look at the hello.
		inner, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil || inner == nil {
			return nil
		}
		cfg = inner
	}
	return cfg.VerifyConnection
}
