package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// spyServer is a gRPC server with a real mTLS listener that counts the
// handshakes it saw and every byte it read after one succeeded: what a
// server at the wrong address learns of a client's requests.
type spyServer struct {
	addr       string
	handshakes chan error   // the outcome of each handshake, in order
	appBytes   atomic.Int64 // read on connections whose handshake succeeded
	records    atomic.Int64 // records that reached IngestRecords
	calls      atomic.Int64 // calls that reached any handler
}

// spyCreds wraps a listener's credentials to report to a spyServer.
type spyCreds struct {
	credentials.TransportCredentials
	spy *spyServer
}

func (c spyCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	c.spy.handshakes <- err
	if err != nil {
		return nil, nil, err
	}
	return &countingConn{Conn: conn, n: &c.spy.appBytes}, ai, nil
}

func (c spyCreds) Clone() credentials.TransportCredentials { return c }

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// spyNode accepts every admin call and counts what reached it.
type spyNode struct {
	fedreportv1.UnimplementedNodeAdminServiceServer
	spy *spyServer
}

func (s spyNode) IngestRecords(stream fedreportv1.NodeAdminService_IngestRecordsServer) error {
	s.spy.calls.Add(1)
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&fedreportv1.IngestRecordsResponse{})
		}
		if err != nil {
			return err
		}
		s.spy.records.Add(int64(len(req.GetRecords())))
	}
}

func (s spyNode) RetractRecords(context.Context, *fedreportv1.RetractRecordsRequest) (*fedreportv1.RetractRecordsResponse, error) {
	s.spy.calls.Add(1)
	return &fedreportv1.RetractRecordsResponse{}, nil
}

func (s spyNode) ListDisclosures(context.Context, *fedreportv1.ListDisclosuresRequest) (*fedreportv1.ListDisclosuresResponse, error) {
	s.spy.calls.Add(1)
	return &fedreportv1.ListDisclosuresResponse{}, nil
}

// spyCoordinator accepts every read and counts it.
type spyCoordinator struct {
	fedreportv1.UnimplementedCoordinatorServiceServer
	spy *spyServer
}

func (s spyCoordinator) ListMembers(context.Context, *fedreportv1.ListMembersRequest) (*fedreportv1.ListMembersResponse, error) {
	s.spy.calls.Add(1)
	return &fedreportv1.ListMembersResponse{}, nil
}

func (s spyCoordinator) ListRollups(context.Context, *fedreportv1.ListRollupsRequest) (*fedreportv1.ListRollupsResponse, error) {
	s.spy.calls.Add(1)
	return &fedreportv1.ListRollupsResponse{}, nil
}

// serveSpy serves register's services with the certificate files certBase
// (.crt, .key) of pkiDir, trusting the CA bundle caPath, until the test ends.
func serveSpy(t *testing.T, caPath, certBase string, register func(*grpc.Server, *spyServer)) *spyServer {
	t.Helper()
	src, err := mtls.NewFiles(caPath, certBase+".crt", certBase+".key")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spy := &spyServer{addr: lis.Addr().String(), handshakes: make(chan error, 16)}
	srv := grpc.NewServer(grpc.Creds(spyCreds{identity.ServerCredentials(mtls.ServerConfig(src)), spy}))
	register(srv, spy)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return spy
}

// assertNothingReached checks that the client's handshake with spy failed
// and that no application byte or call reached it.
func assertNothingReached(t *testing.T, what string, spy *spyServer) {
	t.Helper()
	select {
	case err := <-spy.handshakes:
		if err == nil {
			t.Errorf("%s: the server's handshake succeeded, want it refused by the client", what)
		}
	case <-t.Context().Done():
		t.Fatalf("%s: the client never reached the server", what)
	}
	if n := spy.appBytes.Load(); n != 0 {
		t.Errorf("%s: the server read %d application bytes, want 0", what, n)
	}
	if n := spy.records.Load(); n != 0 {
		t.Errorf("%s: %d records reached the server, want 0", what, n)
	}
	if n := spy.calls.Load(); n != 0 {
		t.Errorf("%s: %d calls reached the server, want 0", what, n)
	}
}

// TestAdminVerbsSendNothingToAnotherMembersNode puts a server holding IT's
// node key where FR's member admin thinks its node is. Every admin verb
// fails in the handshake, naming the identity it wanted and the one it got,
// and the server reads not one byte of FR's records or requests.
func TestAdminVerbsSendNothingToAnotherMembersNode(t *testing.T) {
	t.Parallel()
	pkiDir := filepath.Join(t.TempDir(), "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "node", "--member", "IT")
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "member-admin", "--member", "FR", "--name", "ops")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	tlsFlags := []string{"--cacert", p("ca.crt"), "--cert", p("member-admin-FR-ops.crt"), "--key", p("member-admin-FR-ops.key")}
	records := writeFile(t, "fr.csv", header+"FR-SECRET-1,arrests,2020-01-02,grooming,app,,1\n")

	for _, tc := range []struct {
		verb string
		args []string
	}{
		{"ingest", []string{records}},
		{"retract", []string{"FR-SECRET-1"}},
		{"audit", nil},
	} {
		t.Run(tc.verb, func(t *testing.T) {
			spy := serveSpy(t, p("ca.crt"), p("node-IT"), func(s *grpc.Server, spy *spyServer) {
				fedreportv1.RegisterNodeAdminServiceServer(s, spyNode{spy: spy})
			})
			args := append(append([]string{tc.verb, "--node", spy.addr}, tlsFlags...), tc.args...)
			_, _, err := runCLI(t, t.Context(), args...)
			if exitCode(err) == 0 {
				t.Errorf("%s to IT's node with FR's admin certificate exited 0, want a refusal", tc.verb)
			}
			for _, want := range []string{"spiffe://isa/node/IT", "want spiffe://isa/node/FR", "nothing was sent"} {
				if err != nil && !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			assertNothingReached(t, tc.verb, spy)
		})
	}
}

// TestAdminVerbsOverTCPNeedAMemberAdminCertificate gives an admin verb an
// operator's certificate: the CLI cannot tell which node it may talk to, so
// it refuses before dialing.
func TestAdminVerbsOverTCPNeedAMemberAdminCertificate(t *testing.T) {
	t.Parallel()
	pkiDir := filepath.Join(t.TempDir(), "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	mustRunCLI(t, "pki", "issue", "--dir", pkiDir, "--role", "operator", "--name", "carol")
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	_, _, err := runCLI(t, t.Context(), "audit", "--node", freeAddr(t), "--cacert", p("ca.crt"),
		"--cert", p("operator-carol.crt"), "--key", p("operator-carol.key"))
	for _, want := range []string{"spiffe://isa/operator/carol", "takes a member-admin certificate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("audit with an operator certificate: got %v, want an error containing %q", err, want)
		}
	}
}

// TestCoordinatorVerbsRefuseAnotherTrustDomain trusts a bundle of two
// federations' CAs and puts the other federation's coordinator where the
// operator's is: every coordinator verb fails in the handshake, naming
// both, and the server reads nothing.
func TestCoordinatorVerbsRefuseAnotherTrustDomain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	isa, other := filepath.Join(dir, "isa"), filepath.Join(dir, "other")
	mustRunCLI(t, "pki", "init", "--dir", isa)
	mustRunCLI(t, "pki", "init", "--dir", other, "--trust-domain", "other")
	mustRunCLI(t, "pki", "issue", "--dir", isa, "--role", "operator", "--name", "carol")
	mustRunCLI(t, "pki", "issue", "--dir", other, "--role", "coordinator", "--name", "main")
	bundle := filepath.Join(dir, "bundle.crt")
	var b []byte
	for _, d := range []string{isa, other} {
		pem, err := os.ReadFile(filepath.Join(d, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, pem...)
	}
	if err := os.WriteFile(bundle, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--cacert", bundle, "--cert", filepath.Join(isa, "operator-carol.crt"), "--key", filepath.Join(isa, "operator-carol.key")}

	for _, args := range [][]string{
		{"members"},
		{"rollups"},
		{"rollup", "--from", "2020-01-01", "--to", "2020-01-31"},
	} {
		t.Run(args[0], func(t *testing.T) {
			spy := serveSpy(t, bundle, filepath.Join(other, "coordinator-main"), func(s *grpc.Server, spy *spyServer) {
				fedreportv1.RegisterCoordinatorServiceServer(s, spyCoordinator{spy: spy})
			})
			full := append(append(append([]string{}, args...), "--coordinator", spy.addr), tlsFlags...)
			_, _, err := runCLI(t, t.Context(), full...)
			if exitCode(err) == 0 {
				t.Errorf("%s to another trust domain's coordinator exited 0, want a refusal", args[0])
			}
			for _, want := range []string{"spiffe://other/coordinator/main", "want a coordinator of trust domain isa"} {
				if err != nil && !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			assertNothingReached(t, args[0], spy)
		})
	}
}
