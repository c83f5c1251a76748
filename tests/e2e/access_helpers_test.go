package e2e_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/node"
)

// The access tests run the real node and coordinator servers over real mTLS
// with certificates made in the test (internal/testpki, internal/pki).
// Names carry an acc prefix: other tests share this package.

const accTD = "isa"

// accLeakCheck fails the test if it leaves goroutines behind. The tests that
// use it are not parallel, so only their own goroutines are counted.
func accLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// accCtx is a call context with a deadline, cancelled when the test ends.
func accCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func accListen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// accNode runs a real node of member on loopback, presenting serverTLS,
// until the test ends, and returns its address.
func accNode(t *testing.T, member string, serverTLS *tls.Config, limits grpcsrv.Limits) string {
	t.Helper()
	n, err := node.Open(node.Config{
		Member:      member,
		DataPath:    filepath.Join(t.TempDir(), member+".db"),
		TrustDomain: accTD,
		ServerTLS:   serverTLS,
		Policy:      node.Policy{MinCellCount: 3},
		Version:     "test",
		Limits:      limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis := accListen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, lis, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: serve: %v", member, err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("node %s: close: %v", member, err)
		}
	})
	return lis.Addr().String()
}

// accCoordinatorConfig is what accCoordinator needs beyond its members.
type accCoordinatorConfig struct {
	serverTLS *tls.Config
	memberTLS func(code string) (*tls.Config, error)
	// memberCode and memberServerTLS, when set, serve the member API too.
	memberCode      string
	memberServerTLS *tls.Config
	limits          grpcsrv.Limits
}

// accCoord is a running coordinator.
type accCoord struct {
	*coordinator.Coordinator
	addr       string // CoordinatorService
	memberAddr string // AggregationService as a member; "" if none
}

// accCoordinator runs a real coordinator over members until the test ends.
func accCoordinator(t *testing.T, cfg accCoordinatorConfig, members ...coordinator.Member) *accCoord {
	t.Helper()
	c, err := coordinator.Open(coordinator.Config{
		DataPath:        filepath.Join(t.TempDir(), "coord.db"),
		Members:         members,
		MemberTimeout:   5 * time.Second,
		ServerTLS:       cfg.serverTLS,
		MemberTLS:       cfg.memberTLS,
		TrustDomain:     accTD,
		MemberCode:      cfg.memberCode,
		MemberServerTLS: cfg.memberServerTLS,
		Version:         "test",
		Limits:          cfg.limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	ac := &accCoord{Coordinator: c}
	ctx, cancel := context.WithCancel(context.Background())
	lis := accListen(t)
	ac.addr = lis.Addr().String()
	done := make(chan error, 2)
	serving := 1
	go func() { done <- c.Serve(ctx, lis) }()
	if cfg.memberCode != "" {
		mlis := accListen(t)
		ac.memberAddr = mlis.Addr().String()
		serving++
		go func() { done <- c.ServeMember(ctx, mlis) }()
	}
	t.Cleanup(func() {
		cancel()
		var errs []error
		for range serving {
			errs = append(errs, <-done)
		}
		if err := errors.Join(append(errs, c.Close())...); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	return ac
}

// accDial connects to addr with cfg; the connection is closed when the test ends.
func accDial(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// accNodeID is the identity of member's node.
func accNodeID(member string) identity.ID { return identity.Node(accTD, member) }
