package node

import (
	"context"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the data file: bbolt's Tx.WriteTo in
// one read transaction, so writes go on meanwhile and none of them is in
// the copy. open is called first with the copy's size and data version and
// returns where the copy goes. A copy taken while an ingest stream is open
// holds the stream unfinished, as a crash would leave it: a node started on
// the copy rolls it back, so the copy is the data as before that ingest.
// The read transaction lasts as long as the writing: a write that must grow
// the file waits for it.
func (s *Store) Backup(ctx context.Context, open func(size int64, dataVersion uint64) io.Writer) error {
	return s.view(func(tx *bolt.Tx) error {
		w := open(tx.Size(), getUint64(tx.Bucket(bucketMeta).Get(keyDataVersion)))
		_, err := tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
}

// ctxWriter stops writing once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
