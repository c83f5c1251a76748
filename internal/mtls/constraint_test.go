package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/testpki"
)

// forge signs, with ca's key, a certificate for id whatever its trust
// domain: what a CA of another member could do with identities of isa.
func forge(t *testing.T, ca *testpki.CA, id identity.ID, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: id.Path()},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{id.URL()},
	}
	if server {
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.CA.Cert, key.Public(), ca.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestACAMintsOnlyItsOwnTrustDomain has the CA of trust domain "other",
// trusted in the same bundle as isa's (as member CAs are), sign isa
// identities: isa's server refuses such a client, and a client refuses
// such a server, in the handshake; the other CA's own identities work.
func TestACAMintsOnlyItsOwnTrustDomain(t *testing.T) {
	t.Parallel()
	isa, other := testpki.New(t, "isa"), testpki.New(t, "other")
	bundle := isa.Pool().Clone()
	bundle.AddCert(other.CA.Cert)
	if got := other.CA.Cert.PermittedURIDomains; len(got) != 1 || got[0] != "other" {
		t.Fatalf("the CA's permitted URI domains are %v, want [other]", got)
	}

	node := identity.Node("isa", "FR")
	addr := serve(t, mtls.ServerConfig(&mtls.Static{Cert: isa.Cert(t, node), Pool: bundle}))
	forgedOp := forge(t, other, identity.Operator("isa", "mallory"), false)
	err := check(t, addr, mtls.ClientConfig(&mtls.Static{Cert: forgedOp, Pool: bundle}, mtls.ExpectID(node)))
	if err == nil {
		t.Error("a client with an isa identity signed by the other CA was accepted")
	}
	honest := check(t, addr, mtls.ClientConfig(&mtls.Static{Cert: other.Cert(t, identity.Operator("other", "olga")), Pool: bundle}, mtls.ExpectID(node)))
	if honest != nil {
		t.Errorf("a client of the other trust domain with its own CA's certificate: %v", honest)
	}

	forgedNode := forge(t, other, node, true)
	fake := serve(t, mtls.ServerConfig(&mtls.Static{Cert: forgedNode, Pool: bundle}))
	err = check(t, fake, mtls.ClientConfig(&mtls.Static{Cert: isa.Cert(t, identity.MemberAdmin("isa", "FR", "ops")), Pool: bundle}, mtls.ExpectID(node)))
	if err == nil || !strings.Contains(err.Error(), "constraint") {
		t.Errorf("a server with FR's node identity signed by the other CA: got %v, want the chain refused for its name constraint", err)
	}
}
