package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CRLFile is the CA's revocation list inside a pki directory. Servers and
// clients read it with --crl and re-read it when it changes.
const CRLFile = "ca.crl"

// CRLValidity is the next-update period written into every revocation list.
// fedreport keeps enforcing a list past it (and logs a warning): a stale
// list still names every certificate revoked until then.
const CRLValidity = 365 * 24 * time.Hour

// ErrAlreadyRevoked is returned by Revoke for a certificate already on the
// revocation list; the list is left as it is.
var ErrAlreadyRevoked = errors.New("certificate is already revoked")

// ErrNotIssued is returned by Revoke for a serial number that the directory's
// index does not hold: a typo must not leave the intended certificate valid.
var ErrNotIssued = errors.New("no certificate with that serial in the index")

// Revocation reasons of RFC 5280 section 5.3.1 that `pki revoke --reason`
// takes, by name.
var reasons = []struct {
	name string
	code int
}{
	{"unspecified", 0},
	{"key-compromise", 1},
	{"affiliation-changed", 3},
	{"superseded", 4},
	{"cessation-of-operation", 5},
	{"privilege-withdrawn", 9},
}

// ReasonNames lists the reasons ParseReason accepts.
func ReasonNames() []string {
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = r.name
	}
	return out
}

// ParseReason returns the RFC 5280 reason code of name (key-compromise,
// keyCompromise and key_compromise are all accepted).
func ParseReason(name string) (int, error) {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s)) }
	for _, r := range reasons {
		if norm(r.name) == norm(name) {
			return r.code, nil
		}
	}
	return 0, fmt.Errorf("revocation reason %q: want one of %s", name, strings.Join(ReasonNames(), ", "))
}

// ReasonName names an RFC 5280 reason code.
func ReasonName(code int) string {
	for _, r := range reasons {
		if r.code == code {
			return r.name
		}
	}
	return fmt.Sprintf("reason-%d", code)
}

// CreateCRL returns a PEM revocation list signed by ca that revokes entries,
// numbered number.
func (ca *CA) CreateCRL(number *big.Int, entries []x509.RevocationListEntry, now time.Time) ([]byte, error) {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(CRLValidity),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("create revocation list: %w", err)
	}
	return pemBlock("X509 CRL", der), nil
}

// readCRL reads dir's revocation list and checks that ca signed it. It
// returns nil, nil when there is none yet.
func readCRL(dir string, ca *CA) (*x509.RevocationList, error) {
	path := filepath.Join(dir, CRLFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read revocation list: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "X509 CRL" {
		return nil, fmt.Errorf("read revocation list %s: no PEM X509 CRL block", path)
	}
	rl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read revocation list %s: %w", path, err)
	}
	if err := rl.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("revocation list %s is not signed by this directory's CA: %w", path, err)
	}
	return rl, nil
}

// writeCRL signs the next revocation list of dir: the entries of prev (if
// any) plus add, numbered one above prev.
func (ca *CA) writeCRL(dir string, prev *x509.RevocationList, add []x509.RevocationListEntry, now time.Time) (*big.Int, error) {
	number := big.NewInt(1)
	var entries []x509.RevocationListEntry
	if prev != nil {
		if prev.Number != nil {
			number.Add(prev.Number, big.NewInt(1))
		}
		entries = slices.Clone(prev.RevokedCertificateEntries)
	}
	entries = append(entries, add...)
	crlPEM, err := ca.CreateCRL(number, entries, now)
	if err != nil {
		return nil, err
	}
	// A new file renamed into place: readers see the old list or the new
	// one, and its new modification time makes every server reload it.
	if err := writeAtomic(filepath.Join(dir, CRLFile), crlPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write revocation list: %w", err)
	}
	return number, nil
}

// RevokeRequest names the certificate to revoke: by its file (Cert) or by
// its serial number (Serial), which must then be in the index.
type RevokeRequest struct {
	Cert   *x509.Certificate
	Serial *big.Int
	// Reason is an RFC 5280 reason code (ParseReason); 0 is unspecified.
	Reason int
	// Now is the revocation time; zero means time.Now().
	Now time.Time
}

// Revoke puts a certificate of dir's CA on dir's revocation list (ca.crl,
// re-signed with the next CRL number) and marks it revoked in the index.
// It returns the certificate's index entry and the new CRL number. A
// certificate already on the list returns ErrAlreadyRevoked.
func Revoke(dir string, req RevokeRequest) (Entry, *big.Int, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return Entry{}, nil, err
	}
	defer unlock()
	ca, err := Load(dir)
	if err != nil {
		return Entry{}, nil, err
	}
	ix, err := readIndex(dir)
	if err != nil {
		return Entry{}, nil, err
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	serial := req.Serial
	if req.Cert != nil {
		if err := req.Cert.CheckSignatureFrom(ca.Cert); err != nil {
			return Entry{}, nil, fmt.Errorf("revoke: certificate %s was not issued by the CA of %s: %w", req.Cert.Subject.CommonName, dir, err)
		}
		serial = req.Cert.SerialNumber
	}
	if serial == nil {
		return Entry{}, nil, errors.New("revoke: give a certificate or a serial number")
	}
	hex := SerialHex(serial)
	i := ix.find(hex)
	if i < 0 {
		if req.Cert == nil {
			return Entry{}, nil, fmt.Errorf("revoke serial %s: %w %s (give the certificate file with --cert instead)", hex, ErrNotIssued, filepath.Join(dir, IndexFile))
		}
		ix.Certificates = append(ix.Certificates, entryOf(req.Cert, ""))
		i = len(ix.Certificates) - 1
	}
	prev, err := readCRL(dir, ca)
	if err != nil {
		return Entry{}, nil, err
	}
	if prev != nil {
		for _, r := range prev.RevokedCertificateEntries {
			if r.SerialNumber.Cmp(serial) == 0 {
				return ix.Certificates[i], prev.Number, fmt.Errorf("revoke %s (serial %s): %w", ix.Certificates[i].Identity, hex, ErrAlreadyRevoked)
			}
		}
	}
	number, err := ca.writeCRL(dir, prev, []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: now, ReasonCode: req.Reason}}, now)
	if err != nil {
		return Entry{}, nil, err
	}
	at := now.UTC().Truncate(time.Second)
	ix.Certificates[i].RevokedAt, ix.Certificates[i].Reason = &at, ReasonName(req.Reason)
	if err := ix.write(dir); err != nil {
		return Entry{}, nil, fmt.Errorf("revoked (the revocation list is written) but could not update the index: %w", err)
	}
	return ix.Certificates[i], number, nil
}

// writeAtomic writes data to a temporary file in path's directory and
// renames it over path.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
