package mtls

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// ErrRevoked is returned (wrapped) for a peer certificate on the revocation list.
var ErrRevoked = errors.New("certificate is revoked")

// revocations is a loaded revocation list file: one list per CA of the
// bundle that signed one. Serial numbers are unique per issuer only, so a
// serial is looked up in the list of the CA that issued the certificate.
type revocations struct {
	lists map[string]*issuerList // key: the issuing CA certificate's DER
}

// issuerList is the revocation list of one CA.
type issuerList struct {
	issuer     string   // the CA's common name, for messages
	number     *big.Int // the CRL number; never goes back
	nextUpdate time.Time
	serials    map[string]bool // big.Int.String() of each revoked serial
}

// loadCRL reads a revocation list file and checks that every list in it is
// signed by a CA of the bundle.
func loadCRL(path string, cas []*x509.Certificate) (*revocations, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: revocation list: %w", err)
	}
	r, err := parseCRLs(b, cas)
	if err != nil {
		return nil, fmt.Errorf("tls: revocation list %s: %w", path, err)
	}
	return r, nil
}

// parseCRLs parses PEM "X509 CRL" blocks (or one DER list) and checks each
// list's signature against the CA certificates cas.
func parseCRLs(b []byte, cas []*x509.Certificate) (*revocations, error) {
	var ders [][]byte
	if bytes.Contains(b, []byte("-----BEGIN")) {
		rest := b
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "X509 CRL" {
				return nil, fmt.Errorf("holds a PEM %q block, want only X509 CRL", block.Type)
			}
			ders = append(ders, block.Bytes)
		}
	} else if len(b) > 0 {
		ders = append(ders, b)
	}
	if len(ders) == 0 {
		return nil, errors.New("holds no revocation list")
	}
	r := &revocations{lists: map[string]*issuerList{}}
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("list %d: %w", i+1, err)
		}
		var issuer *x509.Certificate
		for _, ca := range cas {
			if bytes.Equal(ca.RawSubject, rl.RawIssuer) && rl.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if issuer == nil {
			return nil, fmt.Errorf("list %d (issuer %q) is not signed by a CA of the bundle", i+1, rl.Issuer.CommonName)
		}
		l := &issuerList{issuer: issuer.Subject.CommonName, number: rl.Number, nextUpdate: rl.NextUpdate, serials: map[string]bool{}}
		if l.number == nil {
			l.number = new(big.Int)
		}
		for _, e := range rl.RevokedCertificateEntries {
			l.serials[e.SerialNumber.String()] = true
		}
		key := string(issuer.Raw)
		if prev, ok := r.lists[key]; ok && prev.number.Cmp(l.number) >= 0 {
			continue // two lists of one CA: the newer one holds
		}
		r.lists[key] = l
	}
	return r, nil
}

// notOlderThan refuses a list that would roll a CA's list back to a lower
// CRL number than the one loaded: an old list may miss later revocations.
func (r *revocations) notOlderThan(old *revocations) error {
	if old == nil {
		return nil
	}
	for key, was := range old.lists {
		if now, ok := r.lists[key]; ok && now.number.Cmp(was.number) < 0 {
			return fmt.Errorf("CRL number of %s went back from %s to %s; keeping %s", was.issuer, was.number, now.number, was.number)
		}
	}
	return nil
}

// check returns an error wrapping ErrRevoked if the leaf of any chain is on
// the list of the CA that issued it. A nil list revokes nothing.
func (r *revocations) check(chains [][]*x509.Certificate) error {
	if rc, ok := r.find(chains); ok {
		return rc.err()
	}
	return nil
}

// revokedCert names a certificate a revocation list revokes.
type revokedCert struct {
	who    string // its identity, or its common name
	serial string // as SerialHex prints it
	issuer string // the common name of the CA whose list names it
}

func (rc revokedCert) err() error {
	return fmt.Errorf("%s (serial %s): %w by %s", rc.who, rc.serial, ErrRevoked, rc.issuer)
}

// find returns the leaf of the first chain that is on the list of the CA
// that issued it. A nil list revokes nothing.
func (r *revocations) find(chains [][]*x509.Certificate) (revokedCert, bool) {
	if r == nil {
		return revokedCert{}, false
	}
	for _, chain := range chains {
		if len(chain) < 2 {
			continue
		}
		leaf, issuer := chain[0], chain[1]
		l, ok := r.lists[string(issuer.Raw)]
		if !ok || !l.serials[leaf.SerialNumber.String()] {
			continue
		}
		who := leaf.Subject.CommonName
		if id, err := identity.FromCertificate(leaf); err == nil {
			who = id.String()
		}
		return revokedCert{who: who, serial: SerialHex(leaf), issuer: l.issuer}, true
	}
	return revokedCert{}, false
}

func (r *revocations) count() int {
	n := 0
	for _, l := range r.lists {
		n += len(l.serials)
	}
	return n
}

// numbers lists the CRL numbers, for the log.
func (r *revocations) numbers() string {
	var out []string
	for _, l := range r.lists {
		out = append(out, l.number.String())
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// parseCertificates parses every PEM CERTIFICATE block of b.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
