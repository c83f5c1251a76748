package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

type demoOptions struct {
	dir   string
	keep  bool
	seed  uint64
	debug bool
}

func (o *demoOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "keep the federation's files (CA, certificates, data, CSVs) in DIR (default: a temporary directory, removed)")
	fs.BoolVar(&o.keep, "keep", false, "stay up until interrupted and write DIR/demo.json for grpcurl and scripts")
	fs.Uint64Var(&o.seed, "seed", 2020, "seed of the synthetic records")
	fs.BoolVar(&o.debug, "verbose", false, "log the nodes' and coordinator's lifecycle to stderr")
}

func newDemoCommand() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR] [--keep]",
		Short: "Run a throw-away nine-member federation on loopback and the operation's rollups",
		Long: `demo builds a federation on loopback, all with mutual TLS: a CA, nine member
nodes (FR, AE, IT, SG, ES, BH, SN, GB, AU) and a coordinator. It loads synthetic
records through each node's admin socket whose alliance totals are the
operation's published results (771 arrests, 549 victims identified, 580 sites
blocked), then runs the rollups of phase 1, phase 2 and the whole operation
through the coordinator's gRPC API and prints them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// demoManifest is DIR/demo.json: what scripts and grpcurl need to drive a
// kept demo.
type demoManifest struct {
	Coordinator string                  `json:"coordinator"`
	CA          string                  `json:"ca"`
	Identities  map[string]demoIdentity `json:"identities"`
	Nodes       []demoNode              `json:"nodes"`
}

type demoIdentity struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type demoNode struct {
	Member      string `json:"member"`
	Address     string `json:"address"`
	AdminSocket string `json:"admin_socket"`
	Data        string `json:"data"`
	Records     string `json:"records"`
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) (err error) {
	start := time.Now()
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fedreport-demo-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logOut := io.Discard
	if o.debug {
		logOut = stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))

	// 1. The alliance CA and every identity's certificate.
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.Init(pkiDir, "isa")
	if err != nil {
		return fmt.Errorf("demo: %w (use an empty --dir)", err)
	}
	manifest := demoManifest{CA: filepath.Join(pkiDir, pki.CACertFile), Identities: map[string]demoIdentity{}}
	issue := func(id identity.ID) (mtls.Source, error) {
		certPath, keyPath, err := ca.IssueToDir(pkiDir, id, nil)
		if err != nil {
			return nil, err
		}
		switch id.Role {
		case identity.RoleOperator, identity.RoleAnalyst:
			manifest.Identities[string(id.Role)] = demoIdentity{Cert: certPath, Key: keyPath}
		case identity.RoleMemberAdmin:
			manifest.Identities["member-admin-"+id.Member] = demoIdentity{Cert: certPath, Key: keyPath}
		}
		return mtls.NewFiles(manifest.CA, certPath, keyPath)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nodes"), 0o700); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	serveErr := make(chan error, len(demoMembers)+1)
	var closers []func() error
	defer func() {
		cancel()
		wg.Wait()
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	serve := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				serveErr <- err
				cancel()
			}
		}()
	}

	// 2. Nine member nodes, each with its own bbolt file, mTLS listener and
	//    admin socket. Every node's listeners come before any data file, as
	//    in `fedreport node`, so that a socket in use under --dir (or a --dir
	//    too long for one) leaves no new, empty data file behind.
	socketPath := func(code string) string { return filepath.Join(dir, "nodes", code+".sock") }
	type nodeListeners struct{ tcp, admin net.Listener }
	bound := make([]nodeListeners, len(demoMembers))
	defer func() {
		// Those not handed to a node's Serve, after an early return.
		for _, b := range bound {
			for _, l := range []net.Listener{b.tcp, b.admin} {
				if l != nil {
					_ = l.Close()
				}
			}
		}
	}()
	for i, code := range demoMembers {
		if bound[i].tcp, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("demo node %s: %w", code, err)
		}
		if bound[i].admin, err = node.ListenAdminSocket(socketPath(code)); err != nil {
			return fmt.Errorf("demo node %s: %w", code, err)
		}
	}
	members := make(coordinator.MemberList, 0, len(demoMembers))
	for i, code := range demoMembers {
		src, err := issue(identity.Node("isa", code))
		if err != nil {
			return err
		}
		if _, err := issue(identity.MemberAdmin("isa", code, "admin")); err != nil {
			return err
		}
		dn := demoNode{
			Member:      code,
			AdminSocket: socketPath(code),
			Data:        filepath.Join(dir, "nodes", code+".db"),
			Records:     filepath.Join(dir, "nodes", code+".csv"),
		}
		n, err := node.Open(node.Config{
			Member: code, DataPath: dn.Data, TrustDomain: "isa", ServerTLS: mtls.ServerConfig(src),
			Logger: log.With("member", code), Version: readBuildInfo().Short(),
			Policy: demoPolicy(),
		})
		if err != nil {
			return err
		}
		closers = append(closers, n.Close)
		lis, adminLis := bound[i].tcp, bound[i].admin
		bound[i] = nodeListeners{} // Serve closes them
		dn.Address = lis.Addr().String()
		serve(func() error { return n.Serve(ctx, lis, adminLis) })
		manifest.Nodes = append(manifest.Nodes, dn)
		members = append(members, coordinator.Member{Code: code, Address: dn.Address})
	}

	// 3. Each ministry loads its records through its node's admin socket, as
	//    `fedreport ingest --node unix://...` does.
	for _, dn := range manifest.Nodes {
		recs, err := demoRecords(dn.Member, o.seed)
		if err != nil {
			return err
		}
		if err := writeCSVFile(dn.Records, recs); err != nil {
			return err
		}
		if err := runIngest(ctx, ingestOptions{node: "unix://" + dn.AdminSocket}, []string{dn.Records}, nil, io.Discard, stderr); err != nil {
			return fmt.Errorf("demo ingest %s: %w", dn.Member, err)
		}
	}

	// 4. The coordinator.
	coordSrc, err := issue(identity.Coordinator("isa", "main"))
	if err != nil {
		return err
	}
	coord, err := coordinator.Open(coordinator.Config{
		DataPath: filepath.Join(dir, "coordinator.db"), Members: members, MemberTimeout: 10 * time.Second,
		ServerTLS: mtls.ServerConfig(coordSrc), MemberTLS: memberTLS(coordSrc, "isa"), TrustDomain: "isa",
		Logger: log.With("component", "coordinator"), Version: readBuildInfo().Short(),
		Operations: []coordinator.Operation{demoOperation()},
	})
	if err != nil {
		return err
	}
	closers = append(closers, coord.Close)
	coordLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	manifest.Coordinator = coordLis.Addr().String()
	serve(func() error { return coord.Serve(ctx, coordLis) })
	if _, err := issue(identity.Operator("isa", "demo")); err != nil {
		return err
	}
	if _, err := issue(identity.Analyst("isa", "demo")); err != nil {
		return err
	}

	// 5. The operator runs the three rollups through the coordinator's API.
	op := manifest.Identities["operator"]
	conn, err := dialCoordinator(manifest.Coordinator, tlsOptions{cacert: manifest.CA, cert: op.Cert, key: op.Key})
	if err != nil {
		return err
	}
	defer conn.Close()
	client := fedreportv1.NewCoordinatorServiceClient(conn)
	fmt.Fprintf(stdout, "fedreport demo: 9 member nodes and a coordinator on loopback, mTLS everywhere (files in %s)\n\n", dir)
	for _, ph := range demoPhases {
		cctx, ccancel := callContext(ctx)
		resp, err := client.StartRollup(cctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: ph.from, To: ph.to}})
		ccancel()
		if err != nil {
			select {
			case serr := <-serveErr:
				return serr
			default:
			}
			return describeRPCError("demo rollup", err)
		}
		if err := printRollupTable(stdout, resp.GetRollup(), "== "+ph.name+" =="); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	// The dashboard's and the report's charts per month: the whole
	// operation and phase 2 are unions of months; phase 1, which ends on
	// 30 May, is not, and the members publish no month of it.
	var byMonth []string
	for _, ph := range []struct{ from, to string }{{demoPhases[2].from, demoPhases[2].to}, {demoPhases[1].from, demoPhases[1].to}} {
		cctx, ccancel := callContext(ctx)
		resp, err := client.StartRollup(cctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{
			From: ph.from, To: ph.to, GroupBy: []fedreportv1.Dimension{fedreportv1.Dimension_DIMENSION_MONTH}}})
		ccancel()
		if err != nil {
			return describeRPCError("demo rollup by month", err)
		}
		byMonth = append(byMonth, fmt.Sprintf("%s (%s..%s)", resp.GetRollup().GetId(), ph.from, ph.to))
	}
	fmt.Fprintf(stdout, "by month, for the dashboard's charts: %s\n", strings.Join(byMonth, ", "))
	fmt.Fprintf(stdout, "done in %s\n", time.Since(start).Round(time.Millisecond))
	if !o.keep {
		fmt.Fprintln(stdout, "(demo --keep keeps the federation up and prints what to try on it, the dashboard `fedreport ui` among them)")
		return nil
	}

	mpath := filepath.Join(dir, "demo.json")
	b, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(mpath, append(b, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
The federation stays up until interrupted (Ctrl-C). Manifest: %s
Try:
  export FEDREPORT_COORDINATOR=%s FEDREPORT_CACERT=%s FEDREPORT_CERT=%s FEDREPORT_KEY=%s
  go run ./cmd/fedreport rollup --from 2020-01-01 --to 2020-09-30 --by month
  grpcurl -cacert $FEDREPORT_CACERT -cert $FEDREPORT_CERT -key $FEDREPORT_KEY $FEDREPORT_COORDINATOR list
  go run ./cmd/fedreport rollup --operation %[6]s --phase 1
  go run ./cmd/fedreport ui                      # the dashboard on 127.0.0.1:8080: open the URL it prints
  go run ./cmd/fedreport report --operation %[6]s -o report.html
  (as an analyst, who reads but cannot start rollups: FEDREPORT_CERT=%[7]s FEDREPORT_KEY=%[8]s)
`, mpath, manifest.Coordinator, manifest.CA, op.Cert, op.Key, demoOperation().Name,
		manifest.Identities["analyst"].Cert, manifest.Identities["analyst"].Key)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// writeCSVFile writes records as a CSV file of the format `fedreport ingest` reads.
func writeCSVFile(path string, recs []*fedreportv1.Record) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := records.WriteCSV(bw, recs...); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// demoOperation is the seed's operation as the demo's coordinator
// configures it: the two phases of demoPhases and the nine members.
func demoOperation() coordinator.Operation {
	return coordinator.Operation{
		Name:  "isa-2020",
		Title: "Joint operation against online child sexual exploitation, 2020",
		Phases: []coordinator.Phase{
			{Name: demoPhases[0].name, From: demoPhases[0].from, To: demoPhases[0].to},
			{Name: demoPhases[1].name, From: demoPhases[1].from, To: demoPhases[1].to},
		},
		Members: slices.Clone(demoMembers),
	}
}
