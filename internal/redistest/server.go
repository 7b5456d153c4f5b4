package redistest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// errExited marks a server that exited before answering, most often because
// its port was taken in the meantime: worth another try.
var errExited = errors.New("redis-server exited")

// Server is a private redis-server process on a loopback port, for tests
// that stop and restart Redis. It keeps nothing on disk, so a restart starts
// empty. Its methods are safe for concurrent use.
type Server struct {
	addr string
	args []string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// StartServer starts a redis-server on a free loopback port and waits until
// it answers PING. The server is stopped when t ends. StartServer skips t
// (fails it when [Required]) if redis-server is not on $PATH.
func StartServer(t testing.TB) *Server {
	t.Helper()
	lookPath(t, "redis-server")
	s := startNode(t, t.TempDir(), false)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// startNode starts a server on a fresh free port, trying another port if
// the chosen one was taken before redis-server could bind it. A cluster node
// also needs its bus port, port+10000, to be free.
func startNode(t testing.TB, dir string, cluster bool, extra ...string) *Server {
	t.Helper()
	var err error
	for range 3 {
		var port int
		port, err = freePort(cluster)
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s := newServer(dir, port, cluster, extra...)
		if err = s.start(); err == nil {
			return s
		}
		if !errors.Is(err, errExited) {
			break
		}
	}
	t.Fatal(err)
	return nil
}

// newServer returns a stopped server for port, with its files in dir and
// extra arguments for redis-server.
func newServer(dir string, port int, cluster bool, extra ...string) *Server {
	p := strconv.Itoa(port)
	args := []string{
		"--port", p,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--loglevel", "warning",
	}
	if cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes-"+p+".conf",
		)
	}
	return &Server{addr: net.JoinHostPort("127.0.0.1", p), args: append(args, extra...)}
}

// Addr returns the server's host:port. It stays the same across restarts.
func (s *Server) Addr() string { return s.addr }

// Client returns a new client to the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5s) and waits for
// the process to exit. Its data is lost. Stopping a stopped server does
// nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	if s.proc.stop() {
		t.Logf("redistest: redis-server at %s ignored SIGTERM for 5s and was killed", s.addr)
	}
	s.proc = nil
}

// Start starts a stopped server again on the same address and waits until
// it answers PING; it fails t if it can't. Starting a running server does
// nothing.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	// The old port is free again at once in principle (redis-server sets
	// SO_REUSEADDR), but retry for a while in case something else held it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.startLocked()
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server and starts it again on the same address, empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// start is startLocked for a server nobody else has seen yet.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

// startLocked starts the process and waits for PING. On failure the process
// is gone and the error carries its output.
func (s *Server) startLocked() error {
	p, err := startProcess("redis-server", s.args...)
	if err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	if err := waitReady(p, s.addr, startTimeout); err != nil {
		p.stop()
		return fmt.Errorf("redistest: redis-server on %s: %w; its output:\n%s", s.addr, err, p.output())
	}
	s.proc = p
	return nil
}

// Pause stops the server's process with SIGSTOP: it keeps its connections
// open and answers nothing, as a Redis stuck behind a full disk or a GC-ing
// VM would, so clients see read timeouts rather than refused connections.
// The pause ends at [Server.Resume], or when the server is stopped. Pausing a
// stopped server does nothing.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume continues a server paused by [Server.Pause]. Resuming a server
// that is not paused does nothing.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the
// process to exit. Its data is lost. [Server.Start] starts it again.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill() // fails only if it already exited
	<-s.proc.done
	s.proc = nil
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: signal %v to redis-server at %s: %v", sig, s.addr, err)
	}
}
