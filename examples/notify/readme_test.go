package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary run main instead of the tests, as the
// README's "go run" commands would.
const runMainEnv = "NOTIFY_TEST_RUN_MAIN"

// runMain runs main in a child process of TestReadmeCommands and reports
// whether it did.
func runMain() bool {
	if os.Getenv(runMainEnv) != "1" {
		return false
	}
	main()
	return true
}

// Every "go run ./examples/notify" line of both READMEs starts the app
// with its variables (on a free port, and this test's SMTP server for
// SMTP_ADDR); an event for an offline user ends as a mail there.
func TestReadmeCommands(t *testing.T) {
	for _, file := range []string{"README.md", "README.es.md"} {
		readme, err := os.ReadFile(file)
		require.NoError(t, err)
		n := 0
		for line := range strings.Lines(string(readme)) {
			line, _, _ = strings.Cut(strings.TrimLeft(line, " `"), "#") // a command, maybe in `backquotes`
			fields := strings.Fields(line)
			i := slices.Index(fields, "go")
			if i < 0 || !strings.HasPrefix(strings.Join(fields[i:], " "), "go run ./examples/notify") {
				continue
			}
			n++
			mail := smtptest.Start(t, smtptest.Options{})
			addr := freeAddr(t)
			env := append(cleanEnv(), runMainEnv+"=1")
			smtp := false
			for _, kv := range fields[:i] {
				k, _, _ := strings.Cut(kv, "=")
				switch k {
				case "SMTP_ADDR":
					smtp = true
				case "ADDR":
				default:
					env = append(env, kv)
				}
			}
			env = append(env, "ADDR="+addr, "BATCH_WINDOW=10ms")
			if smtp {
				env = append(env, "SMTP_ADDR="+mail.Addr)
			}
			base := startProcess(t, env)
			assert.Equal(t, sent{Stored: 1, Mail: 1}, post(t, base, "orders", "Order #9 shipped", "ada"), line)
			if smtp {
				mail.WaitMail(t, "ada@example.com", "Order #9 shipped")
			}
		}
		assert.Equal(t, 3, n, "%s: the commands", file)
	}
}

// cleanEnv is the environment a child process starts from: only PATH,
// HOME and TMPDIR of the test's, so that a REDIS_URL or SMTP_ADDR set for
// the tests does not leak into a README command that sets none.
func cleanEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// startProcess runs the test binary as main with env and returns its URL
// once it answers; SIGTERM stops it when the test ends, and it must exit
// cleanly.
func startProcess(t *testing.T, env []string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = env
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			assert.NoError(t, err, "exit after SIGTERM; output:\n%s", out.String())
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("no exit 20s after SIGTERM; output:\n%s", out.String())
		}
	})
	var addr string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "ADDR="); ok {
			addr = v
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "http://" + addr
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the process exited: %v; output:\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		require.False(t, time.Now().After(deadline), "the process did not answer; output:\n%s", out.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// The variables both READMEs document are exactly those the app reads,
// and their commands set no others.
func TestReadmesDocumentTheEnvironment(t *testing.T) {
	read := map[string]bool{}
	_, _ = loadConfig(func(k string) string { read[k] = true; return "" })
	var names []string
	for k := range read {
		names = append(names, k)
	}
	slices.Sort(names)
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|")
	set := regexp.MustCompile(`\b([A-Z][A-Z_]+)=`)
	for _, file := range []string{"README.md", "README.es.md"} {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var documented []string
		for _, m := range row.FindAllStringSubmatch(string(b), -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(documented)
		assert.Equal(t, names, documented, "%s: the table of environment variables", file)
		for _, m := range set.FindAllStringSubmatch(string(b), -1) {
			assert.True(t, read[m[1]], "%s sets %s, which the app does not read", file, m[1])
		}
	}
}

// lockedBuffer collects a process's output while the test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
