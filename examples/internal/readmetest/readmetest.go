// Package readmetest runs an example the way its README tells a reader to,
// so that the README's commands, variables and addresses cannot drift from
// what the program reads.
//
// A test reads the README's shell commands for the example ([Commands]),
// checks their variables against the ones the source reads ([EnvVars]),
// builds the program once ([Build]) and starts it with each command's
// environment ([Start]) on a free loopback port, as a separate process that
// is interrupted (Ctrl-C) when the test ends and must then exit cleanly.
package readmetest

import (
	"bytes"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Command is one "go run ./examples/NAME" line of a README.
type Command struct {
	Line string
	// Env holds the line's leading VAR=value assignments, in order.
	Env [][2]string
}

// Get returns the value the command gives to the variable key, if any.
func (c Command) Get(key string) (string, bool) {
	for _, kv := range c.Env {
		if kv[0] == key {
			return kv[1], true
		}
	}
	return "", false
}

var (
	shellBlock = regexp.MustCompile("(?s)```(?:sh|bash|shell)\n(.*?)```")
	codeSpan   = regexp.MustCompile("`([^`\n]+)`")
)

// Commands returns the commands of the file that run pkg (e.g.
// "./examples/rooms"), with their variables: the lines of its shell
// blocks, then the inline code spans of its text (`BATCH_WINDOW=10s go run
// ./examples/notify`); a trailing "&" and comments are dropped. It fails
// the test if there are none.
func Commands(t testing.TB, file, pkg string) []Command {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, block := range shellBlock.FindAllSubmatch(text, -1) {
		lines = slices.AppendSeq(lines, strings.Lines(string(block[1])))
	}
	for _, span := range codeSpan.FindAllSubmatch(shellBlock.ReplaceAll(text, nil), -1) {
		lines = append(lines, string(span[1]))
	}
	var out []Command
	for _, line := range lines {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSuffix(strings.TrimSpace(line), "&")
		fields := strings.Fields(line)
		i := slices.Index(fields, "go")
		if i < 0 || len(fields) < i+3 || fields[i+1] != "run" || fields[i+2] != pkg {
			continue
		}
		c := Command{Line: strings.TrimSpace(line)}
		for _, f := range fields[:i] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("%s: %q: %q is not VAR=value", file, line, f)
			}
			c.Env = append(c.Env, [2]string{k, v})
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no `go run %s` command", file, pkg)
	}
	return out
}

var getenv = regexp.MustCompile(`(?:os\.Getenv|envOr)\("([A-Z0-9_]+)"`)

// EnvVars returns the environment variables the Go files read, through
// os.Getenv or an envOr helper, sorted.
func EnvVars(t testing.TB, files ...string) []string {
	t.Helper()
	var vars []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range getenv.FindAllSubmatch(src, -1) {
			vars = append(vars, string(m[1]))
		}
	}
	slices.Sort(vars)
	return slices.Compact(vars)
}

// Check checks an example's README.md and README.es.md (in the current
// directory) against the environment variables its main.go reads: both
// READMEs run the same commands; each documents every variable (in
// backquotes) and shows the default address (ADDR's default in main.go, as
// http://ADDR); no command sets a variable the program does not read; a
// command that sets ADDR binds 127.0.0.1. It returns the variables and the
// commands, split into those without REDIS_URL and those with it.
func Check(t testing.TB, pkg string) (vars []string, memory, shared []Command) {
	t.Helper()
	vars = EnvVars(t, "main.go")
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	def := regexp.MustCompile(`envOr\("ADDR", "([^"]+)"\)`).FindSubmatch(src)
	if def == nil {
		t.Fatal(`main.go has no envOr("ADDR", default)`)
	}
	en := Commands(t, "README.md", pkg)
	if es := Commands(t, "README.es.md", pkg); !slices.EqualFunc(en, es, func(a, b Command) bool { return a.Line == b.Line }) {
		t.Errorf("README.es.md runs other commands than README.md:\n%v\n%v", es, en)
	}
	for _, file := range []string{"README.md", "README.es.md"} {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vars {
			if !strings.Contains(string(text), "`"+v+"`") {
				t.Errorf("%s does not document %s", file, v)
			}
		}
		if !strings.Contains(string(text), "http://"+string(def[1])) {
			t.Errorf("%s does not open the default address http://%s", file, def[1])
		}
	}
	for _, c := range en {
		for _, kv := range c.Env {
			if !slices.Contains(vars, kv[0]) {
				t.Errorf("%q sets %s, which the program does not read (it reads %v)", c.Line, kv[0], vars)
			}
		}
		if addr, ok := c.Get("ADDR"); ok && !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("%q: a command for one machine listens on 127.0.0.1", c.Line)
		}
		if _, ok := c.Get("REDIS_URL"); ok {
			shared = append(shared, c)
		} else {
			memory = append(memory, c)
		}
	}
	return vars, memory, shared
}

// EnvTable checks an example whose configuration comes from one function
// of the environment (load calls, say, loadConfig(getenv)): the table of
// variables of README.md and of README.es.md (rows starting "| `NAME` |")
// lists exactly the variables load reads, and no VAR=value in them sets
// another.
func EnvTable(t testing.TB, load func(getenv func(string) string)) {
	t.Helper()
	read := map[string]bool{}
	load(func(k string) string { read[k] = true; return "" })
	names := slices.Sorted(maps.Keys(read))
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|")
	set := regexp.MustCompile(`\b([A-Z][A-Z_]+)=`)
	for _, file := range []string{"README.md", "README.es.md"} {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var documented []string
		for _, m := range row.FindAllStringSubmatch(string(text), -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(documented)
		if !slices.Equal(names, documented) {
			t.Errorf("%s: the table of environment variables has %v; the program reads %v", file, documented, names)
		}
		for _, m := range set.FindAllStringSubmatch(string(text), -1) {
			if !read[m[1]] {
				t.Errorf("%s sets %s, which the program does not read", file, m[1])
			}
		}
	}
}

// Build builds the main package in the current directory into a temporary
// directory and returns the program's path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Process is a running example.
type Process struct {
	// URL is where it serves, http://127.0.0.1:PORT.
	URL string
	out *syncBuffer
}

// Output returns what the process wrote so far (stdout and stderr).
func (p *Process) Output() string { return p.out.String() }

// Start runs bin (built by [Build], or this test binary, os.Args[0], when
// its TestMain runs main for a variable that env sets) with env and
// nothing else of the test's environment but
// PATH, HOME and TMPDIR (so a REDIS_URL of the test's does not leak in),
// except that ADDR is set to a free port of ADDR's host (127.0.0.1 when env
// has none), and waits until it answers HTTP. When the test ends the
// process gets SIGINT, as from Ctrl-C, and must exit with status 0 within
// 20s.
func Start(t testing.TB, bin string, env [][2]string) *Process {
	t.Helper()
	host := "127.0.0.1"
	var vars []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			vars = append(vars, k+"="+v)
		}
	}
	for _, kv := range env {
		if kv[0] == "ADDR" {
			h, _, err := net.SplitHostPort(kv[1])
			if err != nil {
				t.Fatalf("ADDR=%s: %v", kv[1], err)
			}
			host = h
			continue
		}
		vars = append(vars, kv[0]+"="+kv[1])
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &Process{URL: "http://" + addr, out: &syncBuffer{}}
	cmd := exec.Command(bin)
	cmd.Env = append(vars, "ADDR="+addr)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("%s did not exit cleanly after Ctrl-C: %v\n%s", bin, waitErr, p.Output())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s still running 20s after Ctrl-C\n%s", bin, p.Output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %v\n%s", bin, waitErr, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer on %s: %v\n%s", bin, p.URL, err, p.Output())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
