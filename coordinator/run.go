package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Run opens a coordinator with cfg, listens on listenAddr, serves until ctx
// is done and closes everything, the store last.
func Run(ctx context.Context, cfg Config, listenAddr string) error {
	c, err := Open(cfg)
	if err != nil {
		return err
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", listenAddr, err), c.Close())
	}
	// Serve logs the address it serves on, so ":0" shows the real port.
	serveErr := c.Serve(ctx, lis)
	return errors.Join(serveErr, c.Close())
}
