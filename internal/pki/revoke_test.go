package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/isa-alliance/fedreport/internal/identity"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readCRLFile(t *testing.T, dir string) *x509.RevocationList {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("%s holds no X509 CRL block", CRLFile)
	}
	rl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

func TestInitWritesAnEmptySignedRevocationList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	rl := readCRLFile(t, dir)
	if err := rl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("signature: %v", err)
	}
	if rl.Number.Cmp(big.NewInt(1)) != 0 || len(rl.RevokedCertificateEntries) != 0 {
		t.Errorf("got number %v with %d entries, want number 1 and none", rl.Number, len(rl.RevokedCertificateEntries))
	}
	entries, err := List(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("list of a new CA: got %v, %v, want nothing", entries, err)
	}
}

func TestRevokeAndList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	alice, _, err := ca.IssueToDir(dir, identity.Operator("isa", "alice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fr, _, err := ca.IssueToDir(dir, identity.Node("isa", "FR"), nil)
	if err != nil {
		t.Fatal(err)
	}
	aliceCert, frCert := readCert(t, alice), readCert(t, fr)

	// By certificate file.
	e, number, err := Revoke(dir, RevokeRequest{Cert: aliceCert, Reason: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e.Identity != "spiffe://isa/operator/alice" || !e.Revoked() || e.Reason != "key-compromise" || number.Int64() != 2 {
		t.Errorf("revoke alice: got %+v, CRL number %v", e, number)
	}
	// Again: nothing changes.
	if _, _, err := Revoke(dir, RevokeRequest{Cert: aliceCert}); !errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("second revoke: got %v, want ErrAlreadyRevoked", err)
	}
	// By serial, as pki list prints it.
	serial, err := ParseSerial(strings.ToLower(SerialHex(frCert.SerialNumber)))
	if err != nil {
		t.Fatal(err)
	}
	if _, number, err = Revoke(dir, RevokeRequest{Serial: serial}); err != nil || number.Int64() != 3 {
		t.Fatalf("revoke FR by serial: got number %v, %v", number, err)
	}
	rl := readCRLFile(t, dir)
	if err := rl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("signature: %v", err)
	}
	if rl.Number.Int64() != 3 || len(rl.RevokedCertificateEntries) != 2 {
		t.Errorf("got CRL number %v with %d entries, want 3 with 2", rl.Number, len(rl.RevokedCertificateEntries))
	}
	// A serial that was never issued here is refused: a typo must not pass.
	if _, _, err := Revoke(dir, RevokeRequest{Serial: big.NewInt(12345)}); !errors.Is(err, ErrNotIssued) {
		t.Errorf("unknown serial: got %v, want ErrNotIssued", err)
	}
	// A certificate of another CA is refused.
	other, err := NewCA("isa", LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := other.Issue(identity.Analyst("isa", "eve"), nil, aliceCert.NotBefore, aliceCert.NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	eve, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Revoke(dir, RevokeRequest{Cert: eve}); err == nil || !strings.Contains(err.Error(), "not issued by the CA") {
		t.Errorf("a foreign certificate: got %v", err)
	}

	entries, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(entries), entries)
	}
	for _, e := range entries {
		if !e.Revoked() || e.File == "" || e.NotAfter.IsZero() {
			t.Errorf("entry %+v: want revoked, with its file and expiry", e)
		}
	}
}

func TestListFindsCertificatesIssuedBeforeTheIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueToDir(dir, identity.Analyst("isa", "bob"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, IndexFile)); err != nil {
		t.Fatal(err)
	}
	entries, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Identity != "spiffe://isa/analyst/bob" || entries[0].Revoked() {
		t.Errorf("got %+v, want bob's certificate, valid", entries)
	}
}

func TestConcurrentIssuesKeepEveryIndexEntry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		wg.Go(func() {
			if _, _, err := ca.IssueToDir(dir, identity.Analyst("isa", name), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ix, err := readIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Certificates) != 6 {
		t.Errorf("got %d index entries, want 6", len(ix.Certificates))
	}
}

func TestParseSerialAndReason(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1A2B", "0x1a2b", "1a:2b", "serial=1A2B"} {
		n, err := ParseSerial(s)
		if err != nil || n.Int64() != 0x1a2b {
			t.Errorf("ParseSerial(%q): got %v, %v, want 0x1A2B", s, n, err)
		}
	}
	for _, s := range []string{"", "xyz", "-1", "0", "0x"} {
		if _, err := ParseSerial(s); err == nil {
			t.Errorf("ParseSerial(%q): got nil error", s)
		}
	}
	for _, s := range []string{"key-compromise", "keyCompromise", "KEY_COMPROMISE"} {
		if c, err := ParseReason(s); err != nil || c != 1 {
			t.Errorf("ParseReason(%q): got %d, %v", s, c, err)
		}
	}
	if _, err := ParseReason("bored"); err == nil || !strings.Contains(err.Error(), "superseded") {
		t.Errorf("ParseReason(bored): got %v, want the list of reasons", err)
	}
}

// FuzzParseSerial feeds `pki revoke --serial` with arbitrary text: it must
// not panic, accept only positive numbers, and read back what it prints.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"1A2B", "0x1a2b", "1a:2b", "serial=1A2B", "", "-1", "0", "+5", " 0x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSerial(s)
		if err != nil {
			return
		}
		if n.Sign() <= 0 {
			t.Fatalf("ParseSerial(%q) = %v, want a positive number or an error", s, n)
		}
		back, err := ParseSerial(SerialHex(n))
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("ParseSerial(SerialHex(%v)) = %v, %v", n, back, err)
		}
	})
}

func TestListNamesTheFileARotatedCertificateWasMovedTo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "isa")
	if err != nil {
		t.Fatal(err)
	}
	oldPath, oldKey, err := ca.IssueToDir(dir, identity.Node("isa", "FR"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// docs/security.md's rotation: move the old pair away, issue anew, revoke the old.
	for _, p := range []string{oldPath, oldKey} {
		if err := os.Rename(p, p+".old"); err != nil {
			t.Fatal(err)
		}
	}
	newPath, _, err := ca.IssueToDir(dir, identity.Node("isa", "FR"), nil)
	if err != nil {
		t.Fatal(err)
	}
	oldCert, newCert := readCert(t, oldPath+".old"), readCert(t, newPath)
	if _, _, err := Revoke(dir, RevokeRequest{Cert: oldCert, Reason: 4}); err != nil {
		t.Fatal(err)
	}
	entries, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{SerialHex(oldCert.SerialNumber): filepath.Base(oldPath) + ".old", SerialHex(newCert.SerialNumber): filepath.Base(newPath)}
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(entries), entries)
	}
	for _, e := range entries {
		if e.File != want[e.Serial] {
			t.Errorf("serial %s (revoked %v): got file %q, want %q", e.Serial, e.Revoked(), e.File, want[e.Serial])
		}
	}
}
