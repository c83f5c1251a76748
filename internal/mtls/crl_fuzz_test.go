package mtls

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/pki"
)

// FuzzParseCRLs feeds the revocation list parser, which reads a file a
// server is pointed at, with arbitrary bytes. It must not panic, and it may
// only accept lists the CA signed.
func FuzzParseCRLs(f *testing.F) {
	ca, err := pki.NewCA("isa", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	good, err := ca.CreateCRL(big.NewInt(7), []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: time.Now()}}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	block, _ := pem.Decode(good)
	f.Add(good)
	f.Add(block.Bytes)
	f.Add(append(append([]byte{}, good...), good...))
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	f.Add([]byte{})
	cas := []*x509.Certificate{ca.Cert}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseCRLs(b, cas)
		if err != nil {
			return
		}
		for _, l := range r.lists {
			if l.number == nil || l.issuer != ca.Cert.Subject.CommonName {
				t.Fatalf("accepted a list %+v", l)
			}
		}
	})
}
