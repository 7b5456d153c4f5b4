package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// child is a server running in a child process of the bench binary (see
// serveChild).
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	http  *http.Client
	// othersCPU is the largest share of the machine's CPU that other
	// processes took during a measurement (see measureCPU).
	othersCPU float64
}

// startChild starts `bench -serve name` with extra flags and waits for its
// address.
func startChild(name string, flags ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{"-serve", name, "-addr", "127.0.0.1:0"}, flags...)...)
	cmd.Stderr = &prefixWriter{prefix: "# [" + name + " server] ", w: os.Stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, http: &http.Client{Timeout: time.Minute}}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- strings.TrimSpace(s.Text())
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-line:
		if ok && addr != "" {
			c.addr = addr
			return c, nil
		}
	case <-time.After(10 * time.Second):
	}
	c.stop()
	return nil, fmt.Errorf("%s server: no listen address", name)
}

// wsURL is the server's WebSocket endpoint.
func (c *child) wsURL() string { return "ws://" + c.addr + "/ws" }

func (c *child) get(path string) ([]byte, error) {
	resp, err := c.http.Get("http://" + c.addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

func (c *child) getJSON(path string, v any) error {
	b, err := c.get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// mem returns the server's memory after a GC.
func (c *child) mem() (memMeasure, error) {
	var m memMeasure
	err := c.getJSON("/debug/mem", &m)
	return m, err
}

// saveProfile writes the pprof profile at path (e.g.
// "/debug/pprof/heap?gc=1") to dir/file.
func (c *child) saveProfile(path, dir, file string) error {
	b, err := c.get(path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file), b, 0o644)
}

// troubles returns the server's non-zero trouble counters, "" if none;
// verbose adds its informational counters (info_*).
func (c *child) troubles(verbose bool) string {
	var stats map[string]int64
	if err := c.getJSON("/debug/stats", &stats); err != nil {
		return "stats: " + err.Error()
	}
	var parts []string
	for k, v := range stats {
		if v != 0 && (verbose || !strings.HasPrefix(k, "info_")) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// stop kills the child and waits for it.
func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
