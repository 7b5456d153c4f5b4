package main

import (
	"bytes"
	"encoding/json"
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
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary run main instead of the tests: the
// two-process test starts it as the README's "go run" commands would.
const runMainEnv = "EMAIL_TEST_RUN_MAIN"

// readmeCommands returns the environment of each "go run ./examples/email"
// line of the README, split into those without REDIS_URL and those with it.
func readmeCommands(t *testing.T, file string) (memory, shared [][]string) {
	t.Helper()
	readme, err := os.ReadFile(file)
	require.NoError(t, err)
	for line := range strings.Lines(string(readme)) {
		line, _, _ = strings.Cut(line, "#")
		fields := strings.Fields(line)
		i := slices.Index(fields, "go")
		if i < 0 || !strings.HasPrefix(strings.Join(fields[i:], " "), "go run ./examples/email") {
			continue
		}
		if strings.Contains(line, "REDIS_URL=") {
			shared = append(shared, fields[:i])
		} else {
			memory = append(memory, fields[:i])
		}
	}
	return memory, shared
}

// Each one-process command of both READMEs starts the app (on a free
// port, with this test's SMTP server for SMTP_ADDR): a sign-up is mailed,
// or logged and done without SMTP_ADDR.
func TestReadmeCommands(t *testing.T) {
	for _, file := range []string{"README.md", "README.es.md"} {
		memory, shared := readmeCommands(t, file)
		require.Len(t, memory, 2, "%s: the one-process commands", file)
		require.Len(t, shared, 2, "%s: the two-process commands", file)
		for _, vars := range memory {
			mail := smtptest.Start(t, smtptest.Options{})
			env := append(cleanEnv(), runMainEnv+"=1", "ADDR="+freeAddr(t))
			smtp := false
			for _, kv := range vars {
				if strings.HasPrefix(kv, "SMTP_ADDR=") {
					smtp, kv = true, "SMTP_ADDR="+mail.Addr
				}
				env = append(env, kv)
			}
			base := startProcess(t, env)
			id := signUp(t, base, "ada@example.com")
			if smtp {
				mail.WaitMail(t, "ada@example.com", "Hello Ada")
			}
			for deadline := time.Now().Add(20 * time.Second); getTask(t, base, id).State != tasks.Succeeded; time.Sleep(50 * time.Millisecond) {
				require.False(t, time.Now().After(deadline), "%v: the welcome task did not succeed", vars)
			}
		}
	}
}

// Two processes started as the README says share one Redis: sign-ups
// posted to the first are mailed by whichever has a free worker, and both
// take part. The SMTP server holds every mail until three are in flight
// at once, which two workers per process can only reach together.
func TestTwoProcessesShareTheWork(t *testing.T) {
	db := redistest.New(t)
	var once sync.Once
	open := make(chan struct{})
	var mu sync.Mutex
	inFlight := 0
	mail := smtptest.Start(t, smtptest.Options{Hold: func() {
		mu.Lock()
		if inFlight++; inFlight >= 3 {
			once.Do(func() { close(open) })
		}
		mu.Unlock()
		select {
		case <-open:
		case <-time.After(20 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}})

	_, cmds := readmeCommands(t, "README.md")
	require.Len(t, cmds, 2, "README.md shows two processes on Redis")
	var bases, nodes []string
	for _, vars := range cmds {
		addr := freeAddr(t)
		env := append(cleanEnv(), runMainEnv+"=1")
		for _, kv := range vars {
			k, _, _ := strings.Cut(kv, "=")
			switch k {
			case "REDIS_URL", "ADDR": // this test's Redis and a free port instead
			default:
				env = append(env, kv)
			}
		}
		env = append(env, "REDIS_URL=redis://"+db.Opts.Addr, "REDIS_PREFIX="+db.Prefix, "ADDR="+addr,
			"SMTP_ADDR="+mail.Addr, "WORKERS=2")
		base := startProcess(t, env)
		bases = append(bases, base)
		var info struct{ Node string }
		resp, err := http.Get(base + "/api/tasks")
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&info))
		resp.Body.Close()
		nodes = append(nodes, info.Node)
	}
	events := watch(t, bases[0]) // events of both processes

	const n = 6
	want := map[string]bool{}
	for i := range n {
		want[signUp(t, bases[0], "user"+string(rune('a'+i))+"@example.com")] = true // all to the first
	}
	finishedBy := map[string]int{}
	events.wait(t, "the six mails", func(events []tasks.Event) bool {
		clear(finishedBy)
		for _, e := range events {
			if e.Kind == tasks.EventSucceeded && want[e.TaskID] {
				finishedBy[e.Node]++
			}
		}
		return finishedBy[nodes[0]]+finishedBy[nodes[1]] == n
	})
	select {
	case <-open:
	default:
		t.Fatal("three mails were never in flight at once")
	}
	assert.Len(t, finishedBy, 2, "both processes sent mail: %v", finishedBy)
	for _, node := range nodes {
		assert.Positive(t, finishedBy[node], "process %s sent none: %v", node, finishedBy)
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/api/tasks")
		if err == nil {
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
		if time.Now().After(deadline) {
			t.Fatalf("the process did not answer; output:\n%s", out.String())
		}
	}
}

// freeAddr returns a loopback address nothing listens on (for now).
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

// The Redis configuration in this process, so that goleak checks that it
// closes everything it opened.
func TestRedisInProcess(t *testing.T) {
	db := redistest.New(t)
	mail := smtptest.Start(t, smtptest.Options{})
	base := startApp(t, "REDIS_URL", "redis://"+db.Opts.Addr, "REDIS_PREFIX", db.Prefix, "SMTP_ADDR", mail.Addr)
	events := watch(t, base)
	until(t, events, signUp(t, base, "ada@example.com"), tasks.EventSucceeded)
	mail.WaitMail(t, "ada@example.com", "Hello Ada")
}
