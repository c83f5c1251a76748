package ui

import (
	"context"
	"net"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/isa-alliance/fedreport/internal/identity"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Serve answers on its listener until its context is done, and then
// returns nil, with a browser's connection still open, leaving no
// goroutine behind.
func TestServeStopsCleanly(t *testing.T) {
	s, err := New(Config{Client: &fakeClient{}, Identity: identity.Analyst("isa", "bob")})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	resp, err := http.Get(s.URL(lis.Addr().String())[:len("http://")+len(lis.Addr().String())] + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: got %d, want 401", resp.StatusCode)
	}
	// A connection that never sends a request, as a browser's preconnect.
	idle, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: got %v, want nil after its context is done", err)
	}
	http.DefaultClient.CloseIdleConnections()
}
