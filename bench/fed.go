package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	"github.com/isa-alliance/fedreport/internal/records"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// trustDomain is the benchmark federation's SPIFFE trust domain.
const trustDomain = "isa"

// benchRate is a rate no benchmark reaches.
var benchRate = grpcsrv.Rate{PerSecond: 1e9, Burst: 1 << 30}

// benchLimits are the servers' limits in the benchmark: the defaults, but
// with per-identity rates no benchmark reaches. The defaults (Aggregate 5/s
// and StartRollup 0.5/s per identity, bursts of 60 and 10) exist to keep one
// identity from crowding out others; they would make this a measure of the
// limiter's refill rate. The limiter stays in the call path, so its cost is
// measured. The coordinator's pace of its calls to each member is set to
// benchRate for the same reason (coordinator.Config.MemberRate).
func benchLimits() grpcsrv.Limits {
	rates := make(map[string]grpcsrv.Rate, len(grpcsrv.DefaultRates))
	for method := range grpcsrv.DefaultRates {
		rates[method] = benchRate
	}
	return grpcsrv.Limits{Rates: rates}
}

// benchPKI is a throw-away alliance CA: certificates as files for child
// processes, in memory for the servers and clients in this process.
type benchPKI struct {
	dir  string
	ca   *pki.CA
	pool *x509.CertPool
}

func newPKI(dir string) (*benchPKI, error) {
	ca, err := pki.Init(dir, trustDomain)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &benchPKI{dir: dir, ca: ca, pool: pool}, nil
}

// caPath is the CA certificate file.
func (p *benchPKI) caPath() string { return filepath.Join(p.dir, pki.CACertFile) }

// files issues id's certificate and key as files (for a child process).
func (p *benchPKI) files(id identity.ID) (cert, key string, err error) {
	return p.ca.IssueToDir(p.dir, id, nil)
}

// source issues id's certificate in memory.
func (p *benchPKI) source(id identity.ID) (mtls.Source, error) {
	now := time.Now()
	certPEM, keyPEM, err := p.ca.Issue(id, nil, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &mtls.Static{Cert: cert, Pool: p.pool}, nil
}

// dial connects over mTLS as id to a server that must present want.
func (p *benchPKI) dial(addr string, id identity.ID, want mtls.Expect) (*grpc.ClientConn, error) {
	src, err := p.source(id)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(src, want))))
}

// dialSocket connects to a node's admin unix socket (no TLS; the socket's
// file mode is its access control), as `fedreport ingest --node unix://...`.
func dialSocket(path string) (*grpc.ClientConn, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// members is a set of member nodes served from this process, each with its
// own bbolt file and mTLS listener on loopback.
type members struct {
	// reg holds the metrics every member shares (node.NewMetrics): their
	// disclosure log appends in one histogram.
	reg     *prometheus.Registry
	nodes   []*node.Node
	list    []coordinator.Member
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	serveMu sync.Mutex // protects serveErr
	// serveErr is the first serving error of any node.
	serveErr error
}

// memberCode names the i-th member (0-based): M001, M002, ...
func memberCode(i int) string { return fmt.Sprintf("M%03d", i+1) }

// startMembers opens n member nodes under dir, loads recordsEach synthetic
// records into each (through the store's ingest, the path IngestRecords
// takes after decoding) and serves them.
func startMembers(ctx context.Context, p *benchPKI, dir string, n, recordsEach int, seed int64) (_ *members, err error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &members{cancel: cancel, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.close())
		}
	}()
	metrics, err := node.NewMetrics(m.reg)
	if err != nil {
		return nil, err
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		code := memberCode(i)
		src, err := p.source(identity.Node(trustDomain, code))
		if err != nil {
			return nil, err
		}
		nd, err := node.Open(node.Config{
			Member: code, DataPath: filepath.Join(dir, code+".db"), TrustDomain: trustDomain,
			ServerTLS: mtls.ServerConfig(src), Version: "bench", Limits: benchLimits(), Metrics: metrics,
		})
		if err != nil {
			return nil, err
		}
		m.nodes = append(m.nodes, nd)
		if err := loadRecords(ctx, nd.Store(), code, recordsEach, seed+int64(i)); err != nil {
			return nil, fmt.Errorf("member %s: %w", code, err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		m.list = append(m.list, coordinator.Member{Code: code, Address: lis.Addr().String()})
		m.wg.Go(func() {
			if err := nd.Serve(sctx, lis, nil); err != nil {
				m.serveMu.Lock()
				m.serveErr = cmpErr(m.serveErr, fmt.Errorf("member %s: %w", code, err))
				m.serveMu.Unlock()
			}
		})
	}
	return m, nil
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// loadRecords ingests n synthetic records of member into st in one stream.
func loadRecords(ctx context.Context, st *node.Store, member string, n int, seed int64) error {
	in, err := st.BeginIngest(ctx)
	if err != nil {
		return err
	}
	defer in.Abort()
	batch := make([]*fedreportv1.Record, 0, ingestBatch)
	err = records.Gen(member, n, seed, periodFrom, periodTo, func(r *fedreportv1.Record) error {
		batch = append(batch, r)
		if len(batch) < cap(batch) {
			return nil
		}
		err := in.Add("bench", batch)
		batch = make([]*fedreportv1.Record, 0, ingestBatch)
		return err
	})
	if err != nil {
		return err
	}
	if err := in.Add("bench", batch); err != nil {
		return err
	}
	_, err = in.Commit()
	return err
}

// close stops serving and closes every node.
func (m *members) close() error {
	m.cancel()
	m.wg.Wait()
	errs := []error{m.serveErr}
	for _, n := range m.nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// hungMember is a member node that accepts connections and calls but never
// answers: Aggregate and DescribeNode block until the benchmark ends,
// whatever the caller's deadline.
type hungMember struct {
	fedreportv1.UnimplementedAggregationServiceServer
	release chan struct{}
	srv     *grpc.Server
	done    chan error
	// Addr is its mTLS listener.
	Addr string
}

func startHungMember(p *benchPKI, code string) (*hungMember, error) {
	src, err := p.source(identity.Node(trustDomain, code))
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hungMember{
		release: make(chan struct{}),
		srv:     grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(src)))),
		done:    make(chan error, 1),
		Addr:    lis.Addr().String(),
	}
	fedreportv1.RegisterAggregationServiceServer(h.srv, h)
	go func() { h.done <- h.srv.Serve(lis) }()
	return h, nil
}

// Aggregate never answers.
func (h *hungMember) Aggregate(context.Context, *fedreportv1.AggregateRequest) (*fedreportv1.AggregateResponse, error) {
	<-h.release
	return nil, errors.New("hung member released")
}

// DescribeNode never answers.
func (h *hungMember) DescribeNode(context.Context, *fedreportv1.DescribeNodeRequest) (*fedreportv1.DescribeNodeResponse, error) {
	<-h.release
	return nil, errors.New("hung member released")
}

func (h *hungMember) close() error {
	close(h.release)
	h.srv.Stop()
	if err := <-h.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
