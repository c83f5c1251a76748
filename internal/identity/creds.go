package identity

import (
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"
)

// AuthInfo is the grpc AuthInfo of a connection accepted through
// ServerCredentials: the TLS state, and the peer's identity parsed from its
// verified certificate once, at the handshake, instead of on every call
// (authorization, the rate limiter and the handlers each ask for it).
type AuthInfo struct {
	credentials.TLSInfo
	id ID
	ok bool
}

// ServerCredentials returns the transport credentials of a listener with
// cfg: grpc's TLS credentials, whose AuthInfo also carries the identity.
// FromContext reads it from there; the identity still comes only from the
// chain the TLS handshake verified.
func ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return serverCreds{credentials.NewTLS(cfg)}
}

type serverCreds struct {
	credentials.TransportCredentials
}

func (c serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		return conn, ai, nil
	}
	return conn, NewAuthInfo(info), nil
}

// NewAuthInfo returns the AuthInfo of a connection with the TLS state info,
// the peer's identity parsed from its verified leaf certificate.
func NewAuthInfo(info credentials.TLSInfo) AuthInfo {
	a := AuthInfo{TLSInfo: info}
	a.id, a.ok = fromTLSInfo(info)
	return a
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{c.TransportCredentials.Clone()}
}

// fromTLSInfo returns the identity of the verified leaf certificate of info.
func fromTLSInfo(info credentials.TLSInfo) (ID, bool) {
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return ID{}, false
	}
	id, err := FromCertificate(info.State.VerifiedChains[0][0])
	if err != nil {
		return ID{}, false
	}
	return id, true
}
