package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// backupTimeout bounds a whole backup: a data file of many gigabytes takes
// minutes, unlike the other calls (callContext).
const backupTimeout = time.Hour

func newBackupCommand() *cobra.Command {
	var o nodeClientOptions
	cmd := &cobra.Command{
		Use:   "backup --node ADDR FILE",
		Short: "Copy a running node's data file, consistently, to FILE and verify the copy (member admin)",
		Long: `Copy a running node's data file to FILE (member admin, over the admin socket or
mTLS). The node writes the copy from one read transaction (bbolt's Tx.WriteTo):
it is consistent while ingests go on, and holds none of them that were not
committed when it started. The copy is written next to FILE, synced, checked
with the checks of fedreport verify, and only then renamed to FILE; FILE must
not exist. The copy holds the member's records: keep it as the data file is kept.

To restore, stop the node and start it with --data FILE (or copy FILE over its
data file). See docs/operations.md, "Backups".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd, o, args[0])
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackup(cmd *cobra.Command, o nodeClientOptions, path string) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists; give backup a new file (it never overwrites one)", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	conn, err := dialNode(o.node, o.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), backupTimeout)
	defer cancel()
	stream, err := fedreportv1.NewNodeAdminServiceClient(conn).BackupNode(ctx, &fedreportv1.BackupNodeRequest{})
	if err != nil {
		return describeNodeRPCError("backup", o.node, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var (
		first   *fedreportv1.BackupNodeResponse
		written int64
	)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return describeNodeRPCError("backup", o.node, err)
		}
		if first == nil {
			first = msg
		}
		n, err := tmp.Write(msg.GetChunk())
		written += int64(n)
		if err != nil {
			return fmt.Errorf("backup: write %s: %w", tmp.Name(), err)
		}
	}
	if first == nil || written != first.GetSizeBytes() {
		return fmt.Errorf("backup: the node sent %d of %d bytes; nothing was kept, run it again", written, first.GetSizeBytes())
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	report, err := node.Verify(tmp.Name())
	if err != nil {
		return fmt.Errorf("backup: verify the copy: %w", err)
	}
	if !report.OK() {
		return fmt.Errorf("backup: the copy does not verify, and was not kept:\n%s", report)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename survives a crash
		d.Close()
	}
	fmt.Fprintf(cmd.OutOrStdout(), "backed up member %s's node to %s: %s, data version %d, verified (%s)\n",
		first.GetMember(), path, formatBytes(written), first.GetDataVersion(), plural(report.Records, "record"))
	return nil
}
