package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/node"
)

// A role runs in a child process of its own (the bench binary started again
// as `bench child CONFIG.json`), so that its RSS and heap are its own and a
// CPU profile shows only it. The child serves what node.Run or
// coordinator.Run would serve, on a loopback port it picks, and talks to the
// parent in JSON lines: it writes one childReply when it is serving, then
// answers each childRequest read from stdin with one childReply. It stops
// gracefully when stdin closes, so it never outlives the parent.
const (
	roleNode        = "node"
	roleCoordinator = "coordinator"
)

// childConfig is what a child serves.
type childConfig struct {
	Role        string `json:"role"`
	TrustDomain string `json:"trust_domain"`
	CACert      string `json:"cacert"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	Data        string `json:"data"`
	Verbose     bool   `json:"verbose"`

	// Member and AdminSocket configure a node.
	Member      string `json:"member,omitempty"`
	AdminSocket string `json:"admin_socket,omitempty"`

	// Members and MemberTimeout configure a coordinator.
	Members       []coordinator.Member `json:"members,omitempty"`
	MemberTimeout time.Duration        `json:"member_timeout,omitempty"`
}

// childRequest asks a child for its memory ("mem"), a node child for its
// histograms ("histograms"), a coordinator child for a fan-out of its own to
// its members ("fan-out"), or to start a CPU profile into Path ("profile")
// or to stop it ("profile-stop").
type childRequest struct {
	Cmd    string         `json:"cmd"`
	Path   string         `json:"path,omitempty"`
	FanOut *fanOutRequest `json:"fan_out,omitempty"`
}

// childReply answers a request, or announces that the child serves.
type childReply struct {
	Error string    `json:"error,omitempty"`
	Addr  string    `json:"addr,omitempty"`
	Mem   *childMem `json:"mem,omitempty"`
	// Node is a node's histograms.
	Node *nodeHistograms `json:"node,omitempty"`
	// FanOut is a coordinator's fan-out.
	FanOut *fanOutReply `json:"fan_out,omitempty"`
}

// childMem is a child's memory: the Go runtime's view and the kernel's.
type childMem struct {
	HeapAlloc  uint64       `json:"heap_alloc"`
	HeapInuse  uint64       `json:"heap_inuse"`
	HeapSys    uint64       `json:"heap_sys"`
	Sys        uint64       `json:"sys"`
	NumGC      uint32       `json:"num_gc"`
	Goroutines int          `json:"goroutines"`
	Proc       stats.Memory `json:"proc"`
	// CPUSeconds is the child's CPU time so far, user and system.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// runChild is the child side: it serves cfg until stdin closes.
func runChild(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	if len(args) != 1 {
		return errors.New("child: want one argument, the configuration file")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("child: %w", err)
	}
	var cfg childConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("child: config %s: %w", args[0], err)
	}
	logOut := io.Discard
	if cfg.Verbose {
		logOut = stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil)).With("role", cfg.Role)
	src, err := mtls.NewFiles(cfg.CACert, cfg.Cert, cfg.Key)
	if err != nil {
		return fmt.Errorf("child: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("child: %w", err)
	}
	defer lis.Close()

	var serve func(context.Context) error
	var closeRole func() error
	var reg *prometheus.Registry // a node's metrics
	var fan *fanOutCaller        // a coordinator's fan-outs
	switch cfg.Role {
	case roleNode:
		// As `fedreport node` runs.
		reg = prometheus.NewRegistry()
		metrics, err := node.NewMetrics(reg)
		if err != nil {
			return fmt.Errorf("child: %w", err)
		}
		n, err := node.Open(node.Config{
			Member: cfg.Member, DataPath: cfg.Data, TrustDomain: cfg.TrustDomain,
			ServerTLS: mtls.ServerConfig(src), Logger: log, Version: "bench", Limits: benchLimits(), Metrics: metrics,
		})
		if err != nil {
			return fmt.Errorf("child: %w", err)
		}
		closeRole = n.Close
		var adminLis net.Listener
		if cfg.AdminSocket != "" {
			if adminLis, err = node.ListenAdminSocket(cfg.AdminSocket); err != nil {
				return errors.Join(fmt.Errorf("child: %w", err), n.Close())
			}
		}
		serve = func(ctx context.Context) error { return n.Serve(ctx, lis, adminLis) }
	case roleCoordinator:
		c, err := coordinator.Open(coordinator.Config{
			DataPath: cfg.Data, Members: cfg.Members, MemberTimeout: cfg.MemberTimeout,
			ServerTLS: mtls.ServerConfig(src),
			MemberTLS: func(code string) (*tls.Config, error) {
				return mtls.ClientConfig(src, mtls.ExpectID(identity.Node(cfg.TrustDomain, code))), nil
			},
			TrustDomain: cfg.TrustDomain, Logger: log, Version: "bench", Limits: benchLimits(), MemberRate: benchRate,
		})
		if err != nil {
			return fmt.Errorf("child: %w", err)
		}
		// The bench's own fan-outs go over connections of their own,
		// dialed as the coordinator dials its members.
		fan = &fanOutCaller{members: cfg.Members, dial: func(m coordinator.Member) (*grpc.ClientConn, error) {
			creds := credentials.NewTLS(mtls.ClientConfig(src, mtls.ExpectID(identity.Node(cfg.TrustDomain, m.Code))))
			return grpc.NewClient(m.Address, append(memberDialOptions(), grpc.WithTransportCredentials(creds))...)
		}}
		closeRole = func() error { return errors.Join(fan.close(), c.Close()) }
		serve = func(ctx context.Context) error { return c.Serve(ctx, lis) }
	default:
		return fmt.Errorf("child: role %q: want %s or %s", cfg.Role, roleNode, roleCoordinator)
	}
	defer func() {
		if cerr := closeRole(); cerr != nil && err == nil {
			err = fmt.Errorf("child: close: %w", cerr)
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx) }()

	enc := json.NewEncoder(stdout)
	if err := enc.Encode(childReply{Addr: lis.Addr().String()}); err != nil {
		return fmt.Errorf("child: %w", err)
	}
	// The command loop ends when stdin closes; the scanner cannot be
	// interrupted, so a signal ends the child through ctx instead.
	loopDone := make(chan error, 1)
	go func() { loopDone <- childLoop(ctx, stdin, enc, reg, fan) }()
	select {
	case err = <-served:
		if err == nil {
			err = errors.New("stopped serving")
		}
		return fmt.Errorf("child: serve: %w", err)
	case err = <-loopDone:
	case <-ctx.Done():
	}
	pprof.StopCPUProfile()
	cancel()
	if serr := <-served; serr != nil && err == nil {
		err = fmt.Errorf("child: serve: %w", serr)
	}
	return err
}

// childLoop answers requests until stdin closes; reg has a node's metrics,
// or is nil; fan makes a coordinator's fan-outs, or is nil.
func childLoop(ctx context.Context, stdin io.Reader, enc *json.Encoder, reg *prometheus.Registry, fan *fanOutCaller) error {
	sc := bufio.NewScanner(stdin)
	var profile *os.File
	defer func() {
		if profile != nil {
			pprof.StopCPUProfile()
			_ = profile.Close()
		}
	}()
	for sc.Scan() {
		var req childRequest
		var reply childReply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			reply.Error = err.Error()
		} else {
			switch req.Cmd {
			case "mem":
				m, err := readChildMem()
				if err != nil {
					reply.Error = err.Error()
				}
				reply.Mem = &m
			case "histograms":
				if reg == nil {
					reply.Error = "not a node"
					break
				}
				h, err := gatherNode(reg)
				if err != nil {
					reply.Error = err.Error()
				}
				reply.Node = &h
			case "fan-out":
				if fan == nil || req.FanOut == nil {
					reply.Error = "not a coordinator, or no fan-out asked"
					break
				}
				r, err := fan.run(ctx, *req.FanOut)
				if err != nil {
					reply.Error = err.Error()
				}
				reply.FanOut = &r
			case "profile":
				if profile != nil {
					reply.Error = "a profile is running"
					break
				}
				f, err := os.Create(req.Path)
				if err == nil {
					if err = pprof.StartCPUProfile(f); err != nil {
						_ = f.Close()
					}
				}
				if err != nil {
					reply.Error = err.Error()
					break
				}
				profile = f
			case "profile-stop":
				if profile != nil {
					pprof.StopCPUProfile()
					if err := profile.Close(); err != nil {
						reply.Error = err.Error()
					}
					profile = nil
				}
			default:
				reply.Error = fmt.Sprintf("unknown command %q", req.Cmd)
			}
		}
		if err := enc.Encode(reply); err != nil {
			return err
		}
	}
	return sc.Err()
}

func readChildMem() (childMem, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	pm, err := stats.ProcMemory(0)
	cpu, cerr := stats.CPUTime()
	return childMem{
		HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, Sys: ms.Sys,
		NumGC: ms.NumGC, Goroutines: runtime.NumGoroutine(), Proc: pm, CPUSeconds: cpu.Seconds(),
	}, errors.Join(err, cerr)
}

// child is the parent's handle on a running child process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte // the child's stdout, line by line; closed at EOF
	done  chan error  // the child's exit

	stopOnce sync.Once
	stopErr  error
	// Addr is the child's mTLS listener.
	Addr string
}

// childStartTimeout bounds how long a child may take to open its store and listen.
const childStartTimeout = 2 * time.Minute

// childCallTimeout bounds one request to a child.
const childCallTimeout = 30 * time.Second

// startChild starts the bench binary again as a child serving cfg. Its
// configuration is written to dir/name.json; its stderr goes to stderr.
func startChild(ctx context.Context, dir, name string, cfg childConfig, stderr io.Writer) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cfgPath := filepath.Join(dir, name+".json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(exe, "child", cfgPath)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	reply, err := c.read(ctx, childStartTimeout)
	if err != nil {
		return nil, errors.Join(err, c.stop())
	}
	c.Addr = reply.Addr
	return c, nil
}

// PID is the child's process id.
func (c *child) PID() int { return c.cmd.Process.Pid }

func (c *child) read(ctx context.Context, timeout time.Duration) (childReply, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			return childReply{}, fmt.Errorf("%s exited (its stderr says why)", c.name)
		}
		var r childReply
		if err := json.Unmarshal(line, &r); err != nil {
			return childReply{}, fmt.Errorf("%s: reply %q: %w", c.name, line, err)
		}
		if r.Error != "" {
			return r, fmt.Errorf("%s: %s", c.name, r.Error)
		}
		return r, nil
	case <-t.C:
		return childReply{}, fmt.Errorf("%s: no answer in %s", c.name, timeout)
	case <-ctx.Done():
		return childReply{}, ctx.Err()
	}
}

// call sends one request and waits for its reply.
func (c *child) call(ctx context.Context, req childRequest) (childReply, error) {
	return c.callWithin(ctx, req, childCallTimeout)
}

// callWithin sends one request and waits for its reply for timeout at most.
func (c *child) callWithin(ctx context.Context, req childRequest, timeout time.Duration) (childReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return childReply{}, err
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return childReply{}, fmt.Errorf("%s: %w", c.name, err)
	}
	return c.read(ctx, timeout)
}

// Mem returns the child's memory.
func (c *child) Mem(ctx context.Context) (childMem, error) {
	r, err := c.call(ctx, childRequest{Cmd: "mem"})
	if err != nil {
		return childMem{}, err
	}
	if r.Mem == nil {
		return childMem{}, fmt.Errorf("%s: no memory in reply", c.name)
	}
	return *r.Mem, nil
}

// Histograms returns a node child's histograms.
func (c *child) Histograms(ctx context.Context) (nodeHistograms, error) {
	r, err := c.call(ctx, childRequest{Cmd: "histograms"})
	if err != nil {
		return nodeHistograms{}, err
	}
	if r.Node == nil {
		return nodeHistograms{}, fmt.Errorf("%s: no histograms in reply", c.name)
	}
	return *r.Node, nil
}

// childStopTimeout bounds a graceful stop (the node's grace period is 5 s;
// the coordinator lets a running rollup finish).
const childStopTimeout = 30 * time.Second

// stop closes the child's stdin, which makes it shut down gracefully, and
// waits for it; a child that does not exit in time is killed. It is safe
// to call more than once.
func (c *child) stop() error {
	c.stopOnce.Do(func() {
		_ = c.stdin.Close()
		// Whatever the child still writes is of no interest now.
		go func() {
			for range c.lines {
			}
		}()
		t := time.NewTimer(childStopTimeout)
		defer t.Stop()
		var err error
		select {
		case err = <-c.done:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			err = fmt.Errorf("did not stop in %s; killed", childStopTimeout)
			<-c.done
		}
		if err != nil {
			c.stopErr = fmt.Errorf("%s: %w", c.name, err)
		}
	})
	return c.stopErr
}
