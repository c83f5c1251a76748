//go:build !unix

package pki

// lockDir does not lock where flock(2) is missing: run one pki command at a time there.
func lockDir(string) (func(), error) { return func() {}, nil }
