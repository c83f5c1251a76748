package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
)

// IndexFile is the record of every certificate `fedreport pki` issued or
// revoked in a directory; `pki list` prints it.
const IndexFile = "index.json"

// indexVersion is the format version of IndexFile.
const indexVersion = 1

// Entry is one issued certificate in the index.
type Entry struct {
	// Identity is the certificate's SPIFFE ID.
	Identity string `json:"identity"`
	// Serial is the serial number in upper-case hexadecimal, as `openssl
	// x509 -serial` prints it and `pki revoke --serial` takes it.
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// File is the certificate file, relative to the directory; empty for
	// a certificate revoked by serial that pki did not issue into it. List
	// gives the file that holds the certificate now, empty if none does.
	File string `json:"file,omitempty"`
	// RevokedAt is set once the certificate is on the revocation list.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Reason is the revocation reason's name (RFC 5280 5.3.1).
	Reason string `json:"reason,omitempty"`
}

// Revoked reports whether the entry is on the revocation list.
func (e Entry) Revoked() bool { return e.RevokedAt != nil }

// index is the JSON document of IndexFile.
type index struct {
	Version      int     `json:"version"`
	Certificates []Entry `json:"certificates"`
}

func readIndex(dir string) (*index, error) {
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return &index{Version: indexVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("read index %s: %w", filepath.Join(dir, IndexFile), err)
	}
	if ix.Version != indexVersion {
		return nil, fmt.Errorf("read index %s: version %d, want %d", filepath.Join(dir, IndexFile), ix.Version, indexVersion)
	}
	return &ix, nil
}

func (ix *index) write(dir string) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, IndexFile), append(b, '\n'), 0o644)
}

func (ix *index) find(serial string) int {
	return slices.IndexFunc(ix.Certificates, func(e Entry) bool { return e.Serial == serial })
}

// entryOf describes cert as an index entry; file is relative to the directory.
func entryOf(cert *x509.Certificate, file string) Entry {
	e := Entry{Serial: SerialHex(cert.SerialNumber), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), File: file}
	if id, err := identity.FromCertificate(cert); err == nil {
		e.Identity = id.String()
	} else {
		e.Identity = cert.Subject.CommonName
	}
	return e
}

// addToIndex records a certificate just issued into dir.
func addToIndex(dir string, cert *x509.Certificate, certPath string) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	ix, err := readIndex(dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, certPath)
	if err != nil {
		rel = certPath
	}
	if ix.find(SerialHex(cert.SerialNumber)) < 0 {
		ix.Certificates = append(ix.Certificates, entryOf(cert, rel))
	}
	return ix.write(dir)
}

// List returns the certificates of dir: those in its index and any other
// certificate file in it that its CA issued (pki of an older version wrote
// no index), each with the file that holds it now and marked revoked if
// the revocation list names it. They are sorted by identity, then by
// expiry.
func List(dir string) ([]Entry, error) {
	ca, err := Load(dir)
	if err != nil {
		return nil, err
	}
	ix, err := readIndex(dir)
	if err != nil {
		return nil, err
	}
	entries := slices.Clone(ix.Certificates)
	// Which file holds which certificate now: a rotation moves a
	// certificate to another name (node-FR.crt.old) and puts the new one
	// under the name the index recorded for the old.
	holds := map[string]string{}  // file name -> serial
	fileOf := map[string]string{} // serial -> the first file name that holds it
	certs := map[string]*x509.Certificate{}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() || name == CACertFile || name == CRLFile || name == IndexFile || strings.HasSuffix(name, ".key") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		cert, err := ParseCertificatePEM(b)
		if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil {
			continue // not ours; list only what this CA issued
		}
		serial := SerialHex(cert.SerialNumber)
		holds[name] = serial
		if _, ok := fileOf[serial]; !ok {
			fileOf[serial], certs[serial] = name, cert
		}
	}
	for i, e := range entries {
		if e.File != "" && holds[e.File] == e.Serial {
			continue
		}
		entries[i].File = fileOf[e.Serial] // empty when no file holds it any more
	}
	for serial, name := range fileOf {
		if !slices.ContainsFunc(entries, func(e Entry) bool { return e.Serial == serial }) {
			entries = append(entries, entryOf(certs[serial], name))
		}
	}
	crl, err := readCRL(dir, ca)
	if err != nil {
		return nil, err
	}
	if crl != nil {
		for i, e := range entries {
			if e.Revoked() {
				continue
			}
			for _, r := range crl.RevokedCertificateEntries {
				if SerialHex(r.SerialNumber) == e.Serial {
					at := r.RevocationTime.UTC()
					entries[i].RevokedAt, entries[i].Reason = &at, ReasonName(r.ReasonCode)
				}
			}
		}
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		if c := strings.Compare(a.Identity, b.Identity); c != 0 {
			return c
		}
		return a.NotAfter.Compare(b.NotAfter)
	})
	return entries, nil
}

// SerialHex formats a serial number as upper-case hexadecimal.
func SerialHex(n *big.Int) string { return fmt.Sprintf("%X", n) }

// ParseSerial parses a serial number as `pki list` and `openssl x509
// -serial` print it: hexadecimal, with an optional 0x or serial= prefix and
// optional colons.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "serial="), "0x")
	t = strings.TrimPrefix(t, "0X")
	t = strings.ReplaceAll(t, ":", "")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || t == "" || n.Sign() <= 0 || strings.ContainsAny(t, "+-") {
		return nil, fmt.Errorf("serial %q: want the hexadecimal serial `fedreport pki list` prints", s)
	}
	return n, nil
}
