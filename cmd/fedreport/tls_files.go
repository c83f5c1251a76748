package main

import (
	"log/slog"

	"github.com/isa-alliance/fedreport/internal/mtls"
)

// serverFiles loads a server's own certificate and key with the CA bundle
// and revocation list of o. The source re-reads the files when they change
// and logs to log what it loads, a failed reload, a revoked peer it refuses
// and, at start and then daily, a certificate that expires within 30 days.
func (o *tlsOptions) serverFiles(log *slog.Logger, cert, key string) (*mtls.Files, error) {
	return mtls.NewFiles(o.cacert, cert, key, mtls.WithCRL(o.crl), mtls.WithLogger(log.With("cert", cert)))
}
