// Package pki creates the alliance CA and issues and revokes the
// certificates of `fedreport pki`: ECDSA P-256 keys, one SPIFFE URI SAN per
// certificate, and DNS/IP SANs on server certificates. Keys are written 0600
// and never overwritten. A directory keeps an index of what it issued
// (index.json) and the CA's revocation list (ca.crl).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// DefaultHosts are the DNS and IP SANs of a server certificate when none are given.
var DefaultHosts = []string{"localhost", "127.0.0.1"}

// Validity periods used unless a caller sets others.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// ErrExists is returned instead of overwriting a certificate or key file.
var ErrExists = errors.New("file already exists; pki never overwrites a key (move it away first)")

// CA is a certificate authority in memory.
type CA struct {
	Cert        *x509.Certificate
	CertPEM     []byte
	Key         *ecdsa.PrivateKey
	TrustDomain string
}

// NewCA creates a self-signed CA for trustDomain. Its certificate carries
// the URI SAN spiffe://<trustDomain> so issuers can recover the domain, and
// a critical name constraint permitting only URIs of that trust domain
// (RFC 5280 4.2.1.10): a certificate it signed for spiffe://<another>/...
// fails every verifier's chain check, so a CA added to a bundle of member
// CAs can mint identities of its own trust domain only.
func NewCA(trustDomain string, validFor time.Duration) (*CA, error) {
	if _, err := identity.New(trustDomain, identity.RoleNode, "XX", ""); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "fedreport CA " + trustDomain, Organization: []string{"fedreport"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		PermittedURIDomains:   []string{trustDomain},
		// The flag marks the whole name constraints extension critical.
		PermittedDNSDomainsCritical: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key, TrustDomain: trustDomain}, nil
}

// IsServer reports whether certificates of role serve connections and so
// carry DNS/IP SANs and the server-auth key usage.
func IsServer(role identity.Role) bool {
	return role == identity.RoleNode || role == identity.RoleCoordinator
}

// Issue signs a new key pair for id. Server roles get hosts as DNS/IP SANs
// (DefaultHosts when empty). It returns PEM-encoded certificate and PKCS#8 key.
func (ca *CA) Issue(id identity.ID, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if err := id.Validate(); err != nil {
		return nil, nil, fmt.Errorf("issue: %w", err)
	}
	if id.TrustDomain != ca.TrustDomain {
		return nil, nil, fmt.Errorf("issue %s: the CA's trust domain is %q", id, ca.TrustDomain)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: key: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: id.Path(), Organization: []string{"fedreport " + ca.TrustDomain}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	if IsServer(id.Role) {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		if len(hosts) == 0 {
			hosts = DefaultHosts
		}
		for _, h := range hosts {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	} else if len(hosts) > 0 {
		return nil, nil, fmt.Errorf("issue %s: --hosts is only for node and coordinator certificates", id)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", id, err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
}

// FileBase is the file name, without extension, of id's certificate and
// key: <role>[-<member>][-<name>], e.g. node-FR, operator-alice.
func FileBase(id identity.ID) string {
	base := string(id.Role)
	if id.Member != "" {
		base += "-" + id.Member
	}
	if id.Name != "" {
		base += "-" + id.Name
	}
	return base
}

// CA file names inside a pki directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Init creates dir (0700) with a new CA for trustDomain in ca.crt and
// ca.key, an empty revocation list in ca.crl (so servers can take --crl from
// the start) and an empty index.
func Init(dir, trustDomain string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	ca, err := NewCA(trustDomain, CAValidity)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := writePair(filepath.Join(dir, CACertFile), ca.CertPEM, filepath.Join(dir, CAKeyFile), pemBlock("PRIVATE KEY", keyDER)); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	if _, err := ca.writeCRL(dir, nil, nil, time.Now()); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	if err := (&index{Version: indexVersion}).write(dir); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	return ca, nil
}

// Load reads the CA of a pki directory.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w (run `fedreport pki init --dir %s` first)", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", filepath.Join(dir, CACertFile), err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("load CA %s: no PEM block", filepath.Join(dir, CAKeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load CA key: not an ECDSA key")
	}
	if len(cert.URIs) != 1 || cert.URIs[0].Scheme != "spiffe" {
		return nil, fmt.Errorf("load CA: certificate has no spiffe://<trust-domain> URI SAN")
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key, TrustDomain: cert.URIs[0].Host}, nil
}

// IssueToDir issues a certificate for id, writes dir/<FileBase>.crt and
// .key and records it in dir's index. It refuses to overwrite either file.
func (ca *CA) IssueToDir(dir string, id identity.ID, hosts []string) (certPath, keyPath string, err error) {
	now := time.Now()
	certPEM, keyPEM, err := ca.Issue(id, hosts, now.Add(-5*time.Minute), now.Add(LeafValidity))
	if err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, FileBase(id))
	certPath, keyPath = base+".crt", base+".key"
	if err := writePair(certPath, certPEM, keyPath, keyPEM); err != nil {
		return "", "", fmt.Errorf("pki issue: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return "", "", err
	}
	if err := addToIndex(dir, cert, certPath); err != nil {
		return "", "", fmt.Errorf("pki issue: %s and %s are written, but the index is not: %w", certPath, keyPath, err)
	}
	return certPath, keyPath, nil
}

// ParseCertificatePEM parses the first certificate of a PEM file.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func writePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s: %w", p, ErrExists)
		}
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeNew(certPath, certPEM, 0o644)
}

// writeNew writes a file that must not exist yet (O_EXCL), so a key is never
// silently replaced even by a concurrent run.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ crashes instead).
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1))
}
