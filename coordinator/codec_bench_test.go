package coordinator

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/isa-alliance/fedreport/internal/boltmap"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/testpki"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// benchRollups is how many 200-member rollups the benchmarks store.
const benchRollups = 500

// benchStore opens a store in a temporary directory holding benchRollups
// rollups of 200 members (~19 KB each, as in BENCHMARKS.md) and returns
// their ids.
func benchStore(b *testing.B, path string, release func(*bolt.DB)) (*store, []string) {
	b.Helper()
	s, _, err := openStoreWith(path, release)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.close() })
	s.db.NoSync = true
	ids := make([]string, benchRollups)
	for i := range ids {
		ids[i] = storeFinished(b, s, bigRollup(200, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE))
	}
	return s, ids
}

// cpuNow is the process's user+system CPU time.
func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGetRollup is step 4 of the bench in one process: GetRollup of
// random stored 200-member rollups from 64 goroutines over one mTLS
// connection, served as the coordinator serves it (encoded) and as it did
// before (decoded: the generated handler), read by a client that decodes
// the answer or keeps its bytes; Health/Check on the same server is the
// peer. cpu-µs/op is the process's CPU (client and server) per call.
func BenchmarkGetRollup(b *testing.B) {
	ca := testpki.New(b, td)
	me := identity.Coordinator(td, "main")
	path := filepath.Join(b.TempDir(), "coord.db")
	c, err := Open(Config{
		DataPath: path,
		Members:  []Member{{"FR", "127.0.0.1:1"}},
		MemberTLS: func(string) (*tls.Config, error) {
			return ca.ClientTLS(b, me, identity.Node(td, "FR")), nil
		},
		ServerTLS: ca.ServerTLS(b, me), TrustDomain: td, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	c.store.db.NoSync = true
	ids := make([]string, benchRollups)
	for i := range ids {
		ids[i] = storeFinished(b, c.store, bigRollup(200, fedreportv1.RollupState_ROLLUP_STATE_COMPLETE))
	}

	// The coordinator as served, and the decoded path on a second listener.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, lis) }()
	b.Cleanup(func() { cancel(); <-served })
	old := grpc.NewServer(c.serverOptions(c.serverTLS, c.rules())...)
	fedreportv1.RegisterCoordinatorServiceServer(old, &server{c: c})
	healthpb.RegisterHealthServer(old, healthOK{})
	oldLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = old.Serve(oldLis) }()
	b.Cleanup(old.Stop)

	connect := func(addr string) *grpc.ClientConn {
		tc := ca.ClientTLS(b, identity.Analyst(td, "bench"), me)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			b.Fatal(err)
		}
		return conn
	}
	for _, srv := range []struct {
		name string
		conn *grpc.ClientConn
	}{{"encoded", connect(lis.Addr().String())}, {"decoded", connect(oldLis.Addr().String())}} {
		call := map[string]func(context.Context) error{
			"client-decodes": func(ctx context.Context) error {
				var resp fedreportv1.GetRollupResponse
				return srv.conn.Invoke(ctx, fedreportv1.CoordinatorService_GetRollup_FullMethodName,
					&fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))]}, &resp)
			},
			"client-raw": func(ctx context.Context) error {
				_, err := invokeRaw(ctx, srv.conn, fedreportv1.CoordinatorService_GetRollup_FullMethodName,
					&fedreportv1.GetRollupRequest{Id: ids[rand.IntN(len(ids))]})
				return err
			},
			"health": func(ctx context.Context) error {
				_, err := healthpb.NewHealthClient(srv.conn).Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			},
		}
		for _, name := range []string{"health", "client-raw", "client-decodes"} {
			b.Run(srv.name+"/"+name, func(b *testing.B) {
				b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
				cpu0, start := cpuNow(b), time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := call[name](context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				})
				wall := time.Since(start)
				b.ReportMetric(float64(b.N)/wall.Seconds(), "calls/s")
				b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// healthOK answers every Health/Check SERVING.
type healthOK struct {
	healthpb.UnimplementedHealthServer
}

func (healthOK) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// BenchmarkStoreRead is the store's part of one GetRollup: the decoded path
// (get, then Marshal of the response) against the encoded one (view into a
// pooled buffer), and the encoded one again without the periodic release of
// the mapped pages (whose cost is the page faults that map them again).
func BenchmarkStoreRead(b *testing.B) {
	s, ids := benchStore(b, filepath.Join(b.TempDir(), "c.db"), boltmap.Release)
	kept, keptIDs := benchStore(b, filepath.Join(b.TempDir(), "kept.db"), func(*bolt.DB) {})
	b.Run("decoded", func(b *testing.B) {
		for b.Loop() {
			r, err := s.get(ids[rand.IntN(len(ids))])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(&fedreportv1.GetRollupResponse{Rollup: r}); err != nil {
				b.Fatal(err)
			}
		}
	})
	encoded := func(s *store, ids []string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				var data mem.BufferSlice
				if err := s.view(ids[rand.IntN(len(ids))], func(v []byte) error {
					data = appendBytesField(nil, 1, v, responsePool)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		}
	}
	b.Run("encoded", encoded(s, ids))
	b.Run("encoded-no-release", encoded(kept, keptIDs))
}

// BenchmarkRelease is what one release of the mapped pages costs, with the
// whole file (benchRollups rollups) mapped and resident, as after a burst of
// reads, and with nothing resident, as when idle between bursts.
func BenchmarkRelease(b *testing.B) {
	s, ids := benchStore(b, filepath.Join(b.TempDir(), "c.db"), func(*bolt.DB) {})
	touchAll := func() {
		for _, id := range ids {
			if err := s.view(id, func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("all-resident", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			touchAll()
			b.StartTimer()
			boltmap.Release(s.db)
		}
	})
	b.Run("none-resident", func(b *testing.B) {
		boltmap.Release(s.db)
		for b.Loop() {
			boltmap.Release(s.db)
		}
	})
}
