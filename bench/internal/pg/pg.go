// Package pg runs a throw-away PostgreSQL server for the benchmark: initdb
// in a temporary directory, pg_ctl on a loopback port, psql for SQL and
// COPY, pgbench for query latencies, and a stop that removes everything.
// The server keeps PostgreSQL's default durability settings (fsync=on,
// synchronous_commit=on, full_page_writes=on, wal_level=replica).
//
// initdb refuses to run as root, so when the benchmark runs as root every
// PostgreSQL program runs as the "postgres" user through runuser(1), in a
// directory that user owns.
package pg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/isa-alliance/fedreport/bench/internal/stats"
)

// DefaultBinDir is where Debian's postgresql-15 package puts the server programs.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Database is the database the benchmark creates and uses.
const Database = "bench"

// Timeouts of the server's lifecycle steps.
const (
	initTimeout = 2 * time.Minute
	startWait   = 60 * time.Second
	stopTimeout = 60 * time.Second
	execTimeout = 30 * time.Minute // long enough for an index build over 10M rows
)

// Server is a running PostgreSQL server.
type Server struct {
	// Version is what `postgres --version` printed.
	Version string
	// Port is the loopback TCP port the server listens on.
	Port int

	bin    string
	dir    string // temporary, owned by the server's user
	data   string
	sock   string   // unix socket directory
	prefix []string // runuser -u postgres -- when running as root

	stopOnce sync.Once
	stopErr  error
}

// Start initialises a cluster in a new temporary directory and starts it
// on a free loopback port. On error nothing is left running.
func Start(ctx context.Context, binDir string) (_ *Server, err error) {
	for _, prog := range []string{"initdb", "pg_ctl", "postgres", "psql", "pgbench"} {
		if _, err := os.Stat(filepath.Join(binDir, prog)); err != nil {
			return nil, fmt.Errorf("postgresql: %s not found in %s", prog, binDir)
		}
	}
	s := &Server{bin: binDir}
	dir, err := os.MkdirTemp("", "fedreport-bench-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	s.dir = dir
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgresql: running as root needs a postgres user for initdb: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("postgresql: %w", err)
		}
		s.prefix = []string{"runuser", "-u", "postgres", "--"}
	}
	s.data = filepath.Join(dir, "data")
	s.sock = dir

	out, err := s.run(ctx, initTimeout, nil, nil, filepath.Join(binDir, "postgres"), "--version")
	if err != nil {
		return nil, err
	}
	s.Version = strings.TrimSpace(out)

	// C collation: text keys compare as bytes, PostgreSQL's fastest choice
	// for a text primary key.
	if _, err := s.run(ctx, initTimeout, nil, nil, filepath.Join(binDir, "initdb"),
		"-D", s.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"); err != nil {
		return nil, err
	}
	if s.Port, err = freePort(); err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s", s.Port, s.sock)
	if _, err := s.run(ctx, startWait+10*time.Second, nil, nil, filepath.Join(binDir, "pg_ctl"),
		"-D", s.data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", strconv.Itoa(int(startWait.Seconds())), "-o", opts, "start"); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, s.logTail())
	}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	if _, err := s.psql(ctx, "postgres", "CREATE DATABASE "+Database); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop stops the server (fast shutdown) and removes its directory. It is
// safe to call more than once and after its caller's context ended.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop()
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
	})
	return s.stopErr
}

func (s *Server) stop() error {
	_, err := s.run(context.Background(), stopTimeout, nil, nil, filepath.Join(s.bin, "pg_ctl"), "-D", s.data, "-m", "fast", "-w", "stop")
	return err
}

// Exec runs SQL in the benchmark database over the unix socket and returns
// psql's unaligned, tuples-only output.
func (s *Server) Exec(ctx context.Context, sql string) (string, error) {
	return s.psql(ctx, Database, sql)
}

func (s *Server) psql(ctx context.Context, db, sql string) (string, error) {
	return s.run(ctx, execTimeout, nil, nil, filepath.Join(s.bin, "psql"), s.psqlArgs(db, "-At", "-c", sql)...)
}

func (s *Server) psqlArgs(db string, more ...string) []string {
	return append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.sock, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db}, more...)
}

// Copy loads CSV with a header line from r into table with
// COPY ... FROM STDIN, streamed through psql over the unix socket, as
// `psql -c '\copy ...'` would, and returns psql's wall time: connection,
// parsing, index maintenance and the commit's fsync.
func (s *Server) Copy(ctx context.Context, table string, r io.Reader) (time.Duration, error) {
	start := time.Now()
	_, err := s.run(ctx, execTimeout, r, nil, filepath.Join(s.bin, "psql"),
		s.psqlArgs(Database, "-c", "COPY "+table+" FROM STDIN WITH (FORMAT csv, HEADER true)")...)
	return time.Since(start), err
}

// Bench runs query n times with pgbench (one client, prepared statements,
// over loopback TCP, PGOPTIONS=options) and returns the latency of each
// run as pgbench logged it: client-side, from sending the query to having
// read the whole result.
func (s *Server) Bench(ctx context.Context, query, options string, n int) (stats.Latencies, error) {
	script := filepath.Join(s.dir, "query.sql")
	if err := os.WriteFile(script, []byte(query+";\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pgbench script: %w", err)
	}
	logPrefix := filepath.Join(s.dir, "pgbench-log")
	old, _ := filepath.Glob(logPrefix + ".*")
	for _, f := range old {
		_ = os.Remove(f)
	}
	env := append(os.Environ(), "PGOPTIONS="+options)
	if _, err := s.run(ctx, execTimeout, nil, env, filepath.Join(s.bin, "pgbench"),
		"-n", "-M", "prepared", "-c", "1", "-j", "1", "-t", strconv.Itoa(n), "-f", script,
		"-l", "--log-prefix="+logPrefix, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres", Database); err != nil {
		return nil, err
	}
	logs, _ := filepath.Glob(logPrefix + ".*")
	if len(logs) != 1 {
		return nil, fmt.Errorf("pgbench: want one transaction log, found %d", len(logs))
	}
	return readPgbenchLog(logs[0])
}

// readPgbenchLog reads pgbench's per-transaction log: "client_id
// transaction_no time script_no time_epoch time_us", time in microseconds.
func readPgbenchLog(path string) (stats.Latencies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pgbench log: %w", err)
	}
	var lat stats.Latencies
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pgbench log line %q: %w", sc.Text(), err)
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	return lat, nil
}

// run runs one PostgreSQL program as the server's user in its directory
// and returns its standard output; a failure carries its standard error.
func (s *Server) run(ctx context.Context, timeout time.Duration, stdin io.Reader, env []string, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := append(append(append([]string(nil), s.prefix...), prog), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdin = stdin
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return "", fmt.Errorf("postgresql: %s: %w: %s", filepath.Base(prog), err, msg)
	}
	return stdout.String(), nil
}

// logTail returns the end of the server log, for start failures.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort() (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := lis.Addr().(*net.TCPAddr).Port
	if err := lis.Close(); err != nil {
		return 0, err
	}
	if port == 0 {
		return 0, errors.New("no free port")
	}
	return port, nil
}
