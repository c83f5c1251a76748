// Package mtls builds the TLS configurations of every fedreport listener and
// client: TLS 1.3 only, client certificates required and verified against
// the alliance CA bundle, and peers identified only by the single SPIFFE URI
// SAN of their verified certificate. Certificates and the CA bundle are
// re-read when their files change, so rotation needs no restart.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// Source supplies the local certificate and the trusted roots. It is asked on
// every handshake, so an implementation may reload them.
type Source interface {
	Certificate() (*tls.Certificate, error)
	Roots() (*x509.CertPool, error)
}

// Static is a Source that never changes; tests and the demo use it.
type Static struct {
	Cert tls.Certificate
	Pool *x509.CertPool
}

// Certificate returns the static certificate.
func (s *Static) Certificate() (*tls.Certificate, error) { return &s.Cert, nil }

// Roots returns the static pool.
func (s *Static) Roots() (*x509.CertPool, error) { return s.Pool, nil }

// Files is a Source backed by PEM files (the --cacert, --cert and --key
// flags). It re-reads them when their size or modification time changes.
type Files struct {
	CACert, Cert, Key string

	mu      sync.Mutex // protects the fields below
	stamp   [3]fileStamp
	cert    *tls.Certificate
	pool    *x509.CertPool
	loadErr error
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// NewFiles returns a Files source and loads it once, so that a wrong path or
// a key that does not match its certificate is reported at start-up.
func NewFiles(caCert, cert, key string) (*Files, error) {
	if caCert == "" || cert == "" || key == "" {
		return nil, errors.New("TLS needs --cacert, --cert and --key (or FEDREPORT_CACERT, FEDREPORT_CERT, FEDREPORT_KEY)")
	}
	f := &Files{CACert: caCert, Cert: cert, Key: key}
	if _, err := f.Certificate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Certificate returns the current certificate, reloading it if a file changed.
func (f *Files) Certificate() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	return f.cert, nil
}

// Roots returns the current CA bundle, reloading it if a file changed.
func (f *Files) Roots() (*x509.CertPool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	return f.pool, nil
}

func (f *Files) reloadLocked() error {
	var now [3]fileStamp
	for i, p := range []string{f.CACert, f.Cert, f.Key} {
		st, err := os.Stat(p)
		if err != nil {
			if f.cert != nil {
				return nil // keep serving with what was loaded; a rotation may be in progress
			}
			return fmt.Errorf("tls: %w", err)
		}
		now[i] = fileStamp{st.Size(), st.ModTime()}
	}
	if f.cert != nil && now == f.stamp {
		return nil
	}
	cert, pool, err := load(f.CACert, f.Cert, f.Key)
	if err != nil {
		if f.cert != nil {
			// A half-written rotation: keep the last good pair and retry on the next handshake.
			f.loadErr = err
			return nil
		}
		return err
	}
	f.cert, f.pool, f.stamp, f.loadErr = cert, pool, now, nil
	return nil
}

func load(caPath, certPath, keyPath string) (*tls.Certificate, *x509.CertPool, error) {
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("tls: CA bundle %s holds no PEM certificate", caPath)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: certificate %s with key %s: %w", certPath, keyPath, err)
	}
	if _, err := identity.FromCertificate(cert.Leaf); err != nil {
		return nil, nil, fmt.Errorf("tls: certificate %s: %w", certPath, err)
	}
	return &cert, pool, nil
}

// Expect checks the identity of the peer a client connects to.
type Expect func(identity.ID) error

// ExpectID accepts only want, as the coordinator does when it dials member FR.
func ExpectID(want identity.ID) Expect {
	return func(got identity.ID) error {
		if got != want {
			return fmt.Errorf("server identity is %s, want %s", got, want)
		}
		return nil
	}
}

// ExpectRole accepts any identity with the given role in trustDomain (an
// empty trustDomain accepts any).
func ExpectRole(trustDomain string, role identity.Role) Expect {
	return func(got identity.ID) error {
		if got.Role != role || (trustDomain != "" && got.TrustDomain != trustDomain) {
			return fmt.Errorf("server identity is %s, want a %s", got, role)
		}
		return nil
	}
}

// ServerConfig returns the configuration of a listener: TLS 1.3 only,
// certificates from src on every handshake, and a client certificate that
// must chain to src's roots and carry one valid identity. A client without
// one never reaches a handler.
func ServerConfig(src Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// GetConfigForClient lets each handshake use the current certificate
		// and CA bundle, so rotation needs no restart.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, err := src.Certificate()
			if err != nil {
				return nil, err
			}
			roots, err := src.Roots()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{*cert},
				ClientAuth:       tls.RequireAndVerifyClientCert,
				ClientCAs:        roots,
				NextProtos:       []string{"h2"},
				VerifyConnection: verifyClientIdentity,
			}, nil
		},
	}
}

func verifyClientIdentity(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("client certificate not verified")
	}
	_, err := identity.FromCertificate(cs.VerifiedChains[0][0])
	return err
}

// ClientConfig returns the configuration of a client: TLS 1.3 only, its
// certificate from src, and a server certificate that must chain to src's
// roots and whose identity expect accepts. The server is authenticated by its
// SPIFFE identity, not its host name, as in go-spiffe, so an address may
// change without reissuing certificates.
func ClientConfig(src Source, expect Expect) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		// Verification is done below against the current roots and identity;
		// skipping the default host-name check is what lets it do so.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots, err := src.Roots()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			id, err := identity.FromCertificate(leaf)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if expect != nil {
				return expect(id)
			}
			return nil
		},
	}
}
