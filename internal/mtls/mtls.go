// Package mtls builds the TLS configurations of every fedreport listener and
// client: TLS 1.3 only, client certificates required and verified against
// the alliance CA bundle, peers identified only by the single SPIFFE URI SAN
// of their verified certificate, and certificates on the alliance's
// revocation list refused. Certificates, the CA bundle and the revocation
// list are re-read when their files change, so rotation and revocation need
// no restart.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// ExpiryWarning is how long before its certificate expires a server starts
// logging warnings about it.
const ExpiryWarning = 30 * 24 * time.Hour

// expiryWarnEvery is how often a long-running process repeats the warning.
const expiryWarnEvery = 24 * time.Hour

// Source supplies the local certificate and the trusted roots. It is asked on
// every handshake, so an implementation may reload them.
type Source interface {
	Certificate() (*tls.Certificate, error)
	Roots() (*x509.CertPool, error)
}

// RevocationChecker is implemented by a Source that also holds a revocation
// list. CheckRevocation is given a peer's verified chains (leaf first) and
// returns an error if the leaf is revoked by its issuer.
type RevocationChecker interface {
	CheckRevocation(chains [][]*x509.Certificate) error
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

// Files is a Source backed by PEM files (the --cacert, --cert, --key and
// --crl flags). It re-reads them when their size or modification time
// changes. A file that disappears or fails to load after the first load
// leaves the last good contents in use (a rotation may be half done); a
// revocation list is never forgotten that way, nor replaced by one with a
// lower CRL number.
type Files struct {
	CACert, Cert, Key string
	// CRL is the revocation list file (PEM "X509 CRL" blocks, one per CA of
	// the bundle, or one DER list); empty checks no revocation.
	CRL string

	log *slog.Logger

	mu       sync.Mutex   // protects the fields below
	stamp    [4]fileStamp // of the files as loaded
	failed   [4]fileStamp // of the last state that failed to load (logged once)
	missing  [4]bool      // a file found missing (logged once)
	cert     *tls.Certificate
	pool     *x509.CertPool
	cas      []*x509.Certificate // the CA bundle, to check CRL signatures
	revoked  *revocations        // nil when no CRL is configured
	lastWarn time.Time           // when the expiry warning was last logged
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// Option configures a Files source.
type Option func(*Files)

// WithCRL makes the source check peers against the revocation list in path
// (as `fedreport pki revoke` writes it). An empty path checks nothing.
func WithCRL(path string) Option { return func(f *Files) { f.CRL = path } }

// WithLogger makes the source log what it loads: each (re)loaded
// certificate, a certificate that expires within ExpiryWarning (at load and
// then daily), a revocation list loaded, a reload that failed, and every
// revoked peer it refuses.
func WithLogger(l *slog.Logger) Option { return func(f *Files) { f.log = l } }

// NewFiles returns a Files source and loads it once, so that a wrong path, a
// key that does not match its certificate, a revocation list not signed by
// the CA or one that revokes the source's own certificate is reported at
// start-up.
func NewFiles(caCert, cert, key string, opts ...Option) (*Files, error) {
	if caCert == "" || cert == "" || key == "" {
		return nil, errors.New("TLS needs --cacert, --cert and --key (or FEDREPORT_CACERT, FEDREPORT_CERT, FEDREPORT_KEY)")
	}
	f := &Files{CACert: caCert, Cert: cert, Key: key}
	for _, o := range opts {
		o(f)
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if _, err := f.Certificate(); err != nil {
		return nil, err
	}
	if err := f.checkOwnRevocation(); err != nil {
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
	f.warnExpiryLocked(time.Now())
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

// CheckRevocation refuses a peer whose certificate the current revocation
// list names, reloading the list if its file changed.
func (f *Files) CheckRevocation(chains [][]*x509.Certificate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reloadLocked(); err != nil {
		return err
	}
	if rc, ok := f.revoked.find(chains); ok {
		// The peer's, not this source's certificate: the logger may carry
		// the latter's file.
		f.log.Warn("refused a peer whose certificate is revoked", "peer", rc.who, "peer_serial", rc.serial, "revoked_by", rc.issuer)
		return rc.err()
	}
	return nil
}

// checkOwnRevocation refuses a certificate of this source that its
// revocation list already names: every peer with the list refuses it, and
// a handshake would only say "bad certificate" or "broken pipe". Only at
// start: on a reload, a list that revokes a certificate being rotated may
// arrive before its replacement.
func (f *Files) checkOwnRevocation() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revoked == nil {
		return nil
	}
	inter := x509.NewCertPool()
	for _, der := range f.cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	chains, err := f.cert.Leaf.Verify(x509.VerifyOptions{Roots: f.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil // not of this federation, or expired: a peer refuses it and says why
	}
	if rc, ok := f.revoked.find(chains); ok {
		return fmt.Errorf("tls: your certificate %s (%s, serial %s) is revoked by the revocation list %s (of %s): %w; ask your federation's CA operator for a new one (fedreport pki issue)",
			f.Cert, rc.who, rc.serial, f.CRL, rc.issuer, ErrRevoked)
	}
	return nil
}

// CheckOwnChain returns an error unless the CA bundle verifies the
// source's own certificate. A server's bundle is its federation's, so a
// certificate it does not verify is one every peer refuses, and a server
// started with it would serve nothing but failed handshakes. Expiry is left
// to the expiry log (a certificate may be replaced while the server runs).
func (f *Files) CheckOwnChain() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	inter := x509.NewCertPool()
	for _, der := range f.cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	leaf := f.cert.Leaf
	// Checked at a time the leaf is valid, so that only the chain counts.
	at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	if now := time.Now(); now.After(leaf.NotBefore) && now.Before(leaf.NotAfter) {
		at = now
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: f.pool, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("tls: certificate %s is not verified by the CA bundle %s (%v), so every peer of this federation would refuse it; "+
			"give --cert a certificate issued by that CA (fedreport pki issue), or --cacert the CA that issued it", f.Cert, f.CACert, err)
	}
	return nil
}

func (f *Files) paths() [4]string { return [4]string{f.CACert, f.Cert, f.Key, f.CRL} }

func (f *Files) reloadLocked() error {
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler) // a Files built without NewFiles
	}
	var now [4]fileStamp
	for i, p := range f.paths() {
		if p == "" {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			if f.cert == nil {
				return fmt.Errorf("tls: %w", err)
			}
			// Keep serving with what was loaded; a rotation may be in
			// progress. A revocation list is never dropped this way.
			if !f.missing[i] {
				f.missing[i] = true
				f.log.Warn("TLS file is missing; keeping the last loaded contents", "file", p, "err", err)
			}
			now[i] = f.stamp[i]
			continue
		}
		f.missing[i] = false
		now[i] = fileStamp{st.Size(), st.ModTime()}
	}
	if f.cert != nil && (now == f.stamp || now == f.failed) {
		return nil // unchanged, or a state that failed to load and was logged
	}
	if err := f.loadLocked(now); err != nil {
		if f.cert == nil {
			return err
		}
		// A half-written rotation: keep the last good state and retry when
		// a file changes again.
		f.failed = now
		f.log.Warn("TLS reload failed; keeping the last loaded certificate, CA bundle and revocation list", "err", err)
	}
	return nil
}

// loadLocked loads whatever changed since f.stamp and, if all of it is good,
// installs it and records now.
func (f *Files) loadLocked(now [4]fileStamp) error {
	first := f.cert == nil
	cert, pool, cas := f.cert, f.pool, f.cas
	pairChanged := first || now[0] != f.stamp[0] || now[1] != f.stamp[1] || now[2] != f.stamp[2]
	if pairChanged {
		var err error
		if cert, pool, cas, err = load(f.CACert, f.Cert, f.Key); err != nil {
			return err
		}
	}
	revoked := f.revoked
	if f.CRL != "" && (first || now[3] != f.stamp[3] || now[0] != f.stamp[0]) {
		r, err := loadCRL(f.CRL, cas)
		if err != nil {
			return err
		}
		if err := r.notOlderThan(f.revoked); err != nil {
			return fmt.Errorf("tls: revocation list %s: %w", f.CRL, err)
		}
		revoked = r
	}
	certChanged := f.cert == nil || f.cert.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0
	crlChanged := revoked != f.revoked
	f.cert, f.pool, f.cas, f.revoked, f.stamp, f.failed = cert, pool, cas, revoked, now, [4]fileStamp{}
	if certChanged {
		id, _ := identity.FromCertificate(cert.Leaf) // checked by load
		verb := "TLS certificate loaded"
		if !first {
			verb = "TLS certificate reloaded"
		}
		f.log.Info(verb, "identity", id.String(), "serial", SerialHex(cert.Leaf), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		f.lastWarn = time.Time{}
		for _, ca := range cas {
			if left := time.Until(ca.NotAfter); left < ExpiryWarning {
				f.log.Warn("CA certificate expires soon; plan a new CA and a bundle with both", "ca", ca.Subject.CommonName, "not_after", ca.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
			}
		}
	}
	if crlChanged && revoked != nil {
		f.log.Info("revocation list loaded", "file", f.CRL, "revoked", revoked.count(), "number", revoked.numbers())
		for _, l := range revoked.lists {
			if !l.nextUpdate.IsZero() && time.Now().After(l.nextUpdate) {
				f.log.Warn("revocation list is past its next update; it is still enforced, but re-sign it (fedreport pki revoke or pki crl)", "issuer", l.issuer, "next_update", l.nextUpdate.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// warnExpiryLocked logs a warning when the local certificate expires within
// ExpiryWarning, at most once a day.
func (f *Files) warnExpiryLocked(now time.Time) {
	leaf := f.cert.Leaf
	left := leaf.NotAfter.Sub(now)
	if left >= ExpiryWarning || (!f.lastWarn.IsZero() && now.Sub(f.lastWarn) < expiryWarnEvery) {
		return
	}
	f.lastWarn = now
	id, _ := identity.FromCertificate(leaf)
	if left <= 0 {
		f.log.Error("TLS certificate has expired; peers refuse it (issue a new one and move it over the old files)",
			"identity", id.String(), "serial", SerialHex(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "file", f.Cert)
		return
	}
	f.log.Warn("TLS certificate expires soon; issue a new one and move it over the old files (no restart needed)",
		"identity", id.String(), "serial", SerialHex(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"days_left", int(left.Hours()/24), "file", f.Cert)
}

func load(caPath, certPath, keyPath string) (*tls.Certificate, *x509.CertPool, []*x509.Certificate, error) {
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: CA bundle: %w", err)
	}
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: CA bundle %s: %w", caPath, err)
	}
	if len(cas) == 0 {
		return nil, nil, nil, fmt.Errorf("tls: CA bundle %s holds no PEM certificate", caPath)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: certificate %s with key %s: %w", certPath, keyPath, err)
	}
	if _, err := identity.FromCertificate(cert.Leaf); err != nil {
		return nil, nil, nil, fmt.Errorf("tls: certificate %s: %w", certPath, err)
	}
	return &cert, pool, cas, nil
}

// SerialHex formats a certificate's serial number as `fedreport pki list`
// and `openssl x509 -serial` print it: upper-case hexadecimal.
func SerialHex(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

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
			if trustDomain == "" {
				return fmt.Errorf("server identity is %s, want a %s", got, role)
			}
			return fmt.Errorf("server identity is %s, want a %s of trust domain %s (spiffe://%s/%s/...)", got, role, trustDomain, trustDomain, role)
		}
		return nil
	}
}

// ErrNotMemberAdmin is returned by ExpectNodeOf for a client identity that
// is not a member admin: only a member admin may call a node's admin API
// over the network, and only its own member's node.
var ErrNotMemberAdmin = errors.New("a node's admin API over the network takes a member-admin certificate")

// ExpectNodeOf accepts only the node of the member whose admin local is,
// in local's trust domain: a member admin's records and requests go to its
// own member's node and no other, however valid another node's
// certificate. The check runs in the handshake, before the client sends a
// byte of a request.
func ExpectNodeOf(local identity.ID) (Expect, error) {
	if local.Role != identity.RoleMemberAdmin {
		return nil, fmt.Errorf("certificate identity is %s: %w of the node's member (or use the node's unix socket)", local, ErrNotMemberAdmin)
	}
	want := identity.Node(local.TrustDomain, local.Member)
	return func(got identity.ID) error {
		if got != want {
			return fmt.Errorf("server identity is %s, want %s: %s may send only to the node of member %s", got, want, local, local.Member)
		}
		return nil
	}, nil
}

// ExpectCoordinatorOf accepts any coordinator of local's trust domain.
func ExpectCoordinatorOf(local identity.ID) Expect {
	return ExpectRole(local.TrustDomain, identity.RoleCoordinator)
}

// LocalIdentity returns the identity of src's current certificate.
func LocalIdentity(src Source) (identity.ID, error) {
	c, err := src.Certificate()
	if err != nil {
		return identity.ID{}, err
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return identity.ID{}, fmt.Errorf("tls: own certificate: %w", err)
		}
	}
	return identity.FromCertificate(leaf)
}

// ServerConfig returns the configuration of a listener: TLS 1.3 only,
// certificates from src on every handshake, and a client certificate that
// must chain to src's roots, carry one valid identity and, when src is a
// RevocationChecker, not be revoked. A client without one never reaches a
// handler.
func ServerConfig(src Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// GetConfigForClient lets each handshake use the current certificate,
		// CA bundle and revocation list, so rotation needs no restart.
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
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    roots,
				NextProtos:   []string{"h2"},
				// Every connection is a full handshake against the current
				// CA bundle and revocation list: a resumed session would
				// carry a verification made before a revocation.
				SessionTicketsDisabled: true,
				VerifyConnection:       func(cs tls.ConnectionState) error { return verifyClient(src, cs) },
			}, nil
		},
	}
}

func verifyClient(src Source, cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("client certificate not verified")
	}
	if _, err := identity.FromCertificate(cs.VerifiedChains[0][0]); err != nil {
		return err
	}
	if rc, ok := src.(RevocationChecker); ok {
		return rc.CheckRevocation(cs.VerifiedChains)
	}
	return nil
}

// ClientConfig returns the configuration of a client: TLS 1.3 only, its
// certificate from src, and a server certificate that must chain to src's
// roots, not be revoked (when src is a RevocationChecker) and whose identity
// expect accepts. The server is authenticated by its SPIFFE identity, not its
// host name, as in go-spiffe, so an address may change without reissuing
// certificates.
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
			chains, err := leaf.Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			id, err := identity.FromCertificate(leaf)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if rc, ok := src.(RevocationChecker); ok {
				if err := rc.CheckRevocation(chains); err != nil {
					return fmt.Errorf("server certificate: %w", err)
				}
			}
			if expect != nil {
				return expect(id)
			}
			return nil
		},
	}
}
