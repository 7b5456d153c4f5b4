package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is one running redis-server.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer   // stdout and stderr
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // cmd.Wait's result, set before done is closed
}

// startProcess starts name with args. One goroutine waits for the process
// and ends when it exits; [process.stop] makes it exit.
func startProcess(name string, args ...string) (*process, error) {
	p := &process{
		cmd:  exec.Command(name, args...),
		out:  new(syncBuffer),
		done: make(chan struct{}),
	}
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	// Don't let a stray child holding the output pipe block Wait.
	p.cmd.WaitDelay = time.Second
	setPdeathsig(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process is still there after 5s,
// and returns once it has been reaped. It reports whether SIGKILL was needed.
func (p *process) stop() (killed bool) {
	if p.exited() {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to exit
	select {
	case <-p.done:
		return false
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return true
}

// output returns what the process has printed so far, for failure messages.
func (p *process) output() string {
	return strings.TrimSpace(p.out.String())
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback TCP port that was free a moment ago. With
// bus set, port+10000, which a cluster node listens on too, was free as
// well.
func freePort(bus bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, err
		}
		if !bus {
			return port, nil
		}
		if port+10000 <= 65535 && portFree(port+10000) {
			return port, nil
		}
	}
	return 0, errors.New("no port p with p+10000 free too")
}

// portFree reports whether port can be listened on at 127.0.0.1 right now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// command sends one command to addr over a fresh connection and returns a
// simple string, integer (as text) or bulk string reply. It needs no client, so it leaves no
// goroutine or pool behind while a server is coming up.
func command(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}

	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return "", err
	}

	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

// waitReady polls addr with PING until it answers PONG, the process exits
// or the timeout passes.
func waitReady(p *process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		reply, err := command(addr, 500*time.Millisecond, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("PING answered %q", reply)
		}
		if p.exited() {
			return fmt.Errorf("%w before answering PING (%v)", errExited, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lookPath skips or fails t when a program is not on $PATH.
func lookPath(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			unavailable(t, "redistest: %s not found on $PATH (install Redis, e.g. apt-get install redis-server)", name)
		}
	}
}
