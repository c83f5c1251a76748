package main

import (
	"fmt"
	"log/slog"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
)

// serverFiles loads a server's own certificate and key with the CA bundle
// and revocation list of o. The source re-reads the files when they change
// and logs to log what it loads, a failed reload, a revoked peer it refuses
// and, at start and then daily, a certificate that expires within 30 days.
//
// It also returns the identity of the certificate, which the caller checks
// against the role it serves.
func (o *tlsOptions) serverFiles(log *slog.Logger, cert, key string) (*mtls.Files, identity.ID, error) {
	src, err := mtls.NewFiles(o.cacert, cert, key, mtls.WithCRL(o.crl), mtls.WithLogger(log.With("cert", cert)))
	if err != nil {
		return nil, identity.ID{}, err
	}
	if err := src.CheckOwnChain(); err != nil {
		return nil, identity.ID{}, err
	}
	c, err := src.Certificate()
	if err != nil {
		return nil, identity.ID{}, err
	}
	id, err := identity.FromCertificate(c.Leaf)
	if err != nil {
		return nil, identity.ID{}, fmt.Errorf("--cert %s: %w", cert, err)
	}
	return src, id, nil
}
