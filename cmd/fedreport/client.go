package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/mtls"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// tlsOptions are the client TLS flags, named as etcdctl and grpcurl name them.
type tlsOptions struct {
	cacert, cert, key string
	crl               string // revocation list; empty checks none
}

func (o *tlsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.cacert, "cacert", os.Getenv("FEDREPORT_CACERT"), "CA bundle to verify servers (env FEDREPORT_CACERT)")
	fs.StringVar(&o.cert, "cert", os.Getenv("FEDREPORT_CERT"), "client certificate (env FEDREPORT_CERT)")
	fs.StringVar(&o.key, "key", os.Getenv("FEDREPORT_KEY"), "client key (env FEDREPORT_KEY)")
	fs.StringVar(&o.crl, "crl", os.Getenv("FEDREPORT_CRL"), "revocation list (ca.crl of fedreport pki) to refuse revoked peers; re-read when it changes (env FEDREPORT_CRL)")
}

// source loads the client's certificate and CA bundle.
func (o *tlsOptions) source() (mtls.Source, error) {
	return mtls.NewFiles(o.cacert, o.cert, o.key, mtls.WithCRL(o.crl))
}

// recvLimit lets the CLI read the largest rollup a coordinator keeps
// (coordinator.MaxRollupBytes) with room for a page token: over gRPC's
// default 4 MiB, a rollup by month, offence and channel over many years
// could be stored but not shown. Node answers and pages stay under 4 MiB.
var recvLimit = grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(coordinator.MaxRollupBytes + 1<<20))

// dialTimeout bounds every client call of the CLI that has no longer deadline.
const dialTimeout = 30 * time.Second

// dialCoordinator connects to a coordinator over mTLS, accepting only a
// server whose certificate carries a coordinator identity of the trust
// domain of --cert: a rollup request or a reader's certificate goes to no
// coordinator of another federation whose CA is in the bundle.
func dialCoordinator(addr string, o tlsOptions) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("--coordinator (or FEDREPORT_COORDINATOR) is required: host:port of the coordinator")
	}
	if err := checkHostPort("--coordinator", addr, "the coordinator's --listen address, e.g. 127.0.0.1:7400"); err != nil {
		return nil, err
	}
	src, err := o.source()
	if err != nil {
		return nil, err
	}
	me, err := mtls.LocalIdentity(src)
	if err != nil {
		return nil, fmt.Errorf("--cert %s: %w", o.cert, err)
	}
	cfg := mtls.ClientConfig(src, mtls.ExpectCoordinatorOf(me))
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), recvLimit, grpc.WithChainUnaryInterceptor(waitOutRateLimits))
}

// dialNode connects to a node's admin API: unix:///path is the node's local
// socket (protected by its file mode); host:port is its mTLS listener, which
// must present the node identity of the member of --cert.
func dialNode(addr string, o tlsOptions) (*grpc.ClientConn, error) {
	switch {
	case addr == "":
		return nil, fmt.Errorf("--node is required: unix:///path/to/node.sock or host:port")
	case strings.HasPrefix(addr, "unix:"):
		// unix:///abs/path, unix://rel/path and unix:rel/path all name a socket
		// file; grpc wants an absolute unix:///path.
		path := strings.TrimPrefix(strings.TrimPrefix(addr, "unix:"), "//")
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("node admin socket %q: %w", path, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("node admin socket: %w (is the node running with --admin-socket %s?)", err, path)
		}
		return grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()), recvLimit, grpc.WithChainUnaryInterceptor(waitOutRateLimits))
	case strings.HasPrefix(addr, "/"):
		return nil, fmt.Errorf("--node %s: write a socket path as unix://%s", addr, addr)
	case isSocketPath(addr):
		return nil, fmt.Errorf("--node %s: write a socket path as unix://%s (or unix://%s)", addr, addr, absOr(addr))
	}
	if err := checkHostPort("--node", addr, "the node's --listen address, e.g. 127.0.0.1:7443"); err != nil {
		return nil, err
	}
	src, err := o.source()
	if err != nil {
		return nil, err
	}
	me, err := mtls.LocalIdentity(src)
	if err != nil {
		return nil, fmt.Errorf("--cert %s: %w", o.cert, err)
	}
	// Records go only to the node of the member of --cert: another node of
	// the federation at that address fails the handshake, before the
	// client sends anything.
	expect, err := mtls.ExpectNodeOf(me)
	if err != nil {
		return nil, fmt.Errorf("--cert %s: %w", o.cert, err)
	}
	cfg := mtls.ClientConfig(src, expect)
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), recvLimit, grpc.WithChainUnaryInterceptor(waitOutRateLimits))
}

// isSocketPath reports whether a --node address without a scheme names a
// unix socket rather than host:port: an existing socket file, or a path that
// ends in .sock as the README's --admin-socket examples do.
func isSocketPath(addr string) bool {
	if fi, err := os.Stat(addr); err == nil && fi.Mode().Type() == os.ModeSocket {
		return true
	}
	return strings.HasSuffix(addr, ".sock")
}

// absOr returns the absolute form of path, or path when there is none.
func absOr(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// checkHostPort refuses an address without a port: grpc would dial port 443
// without a word. Addresses with a scheme (dns:///...) are grpc's to parse.
func checkHostPort(flag, addr, what string) error {
	if strings.Contains(addr, "://") {
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("%s %s: want host:port, with the port (%s)", flag, addr, what)
	}
	return nil
}

// callContext returns a context with the CLI's default deadline.
func callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, dialTimeout)
}

func coordinatorFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "coordinator", os.Getenv("FEDREPORT_COORDINATOR"), "coordinator host:port (env FEDREPORT_COORDINATOR)")
}

// coordinatorClient is what every coordinator verb takes: the address, the
// TLS flags and the output format.
type coordinatorClient struct {
	address string
	tls     tlsOptions
	output  outputFormat
}

func (o *coordinatorClient) AddFlags(fs *pflag.FlagSet) {
	coordinatorFlag(fs, &o.address)
	o.tls.AddFlags(fs)
	o.output.AddFlags(fs)
}

// call dials the coordinator and runs f with a client under the CLI's deadline.
func (o *coordinatorClient) call(ctx context.Context, f func(context.Context, fedreportv1.CoordinatorServiceClient) error) error {
	conn, err := dialCoordinator(o.address, o.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := callContext(ctx)
	defer cancel()
	return f(ctx, fedreportv1.NewCoordinatorServiceClient(conn))
}
