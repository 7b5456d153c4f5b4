package main

import (
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit/examples/internal/readmetest"
	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary run main instead of the tests: the
// two-process test starts it as the README's "go run" commands would.
const runMainEnv = "EMAIL_TEST_RUN_MAIN"

// readmeCommands returns the "go run ./examples/email" commands of the
// README, split into those without REDIS_URL and those with it.
func readmeCommands(t *testing.T, file string) (memory, shared []readmetest.Command) {
	t.Helper()
	for _, c := range readmetest.Commands(t, file, "./examples/email") {
		if _, ok := c.Get("REDIS_URL"); ok {
			shared = append(shared, c)
		} else {
			memory = append(memory, c)
		}
	}
	return memory, shared
}

// startMain runs this test binary as main (see TestMain) with the
// command's variables, changed by set (a value of "" drops the variable),
// on a free port; it is interrupted when the test ends and must then
// exit cleanly. It returns the app's URL.
func startMain(t *testing.T, c readmetest.Command, set map[string]string) string {
	t.Helper()
	env := [][2]string{{runMainEnv, "1"}}
	for _, kv := range c.Env {
		if _, ok := set[kv[0]]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		if v != "" {
			env = append(env, [2]string{k, v})
		}
	}
	return readmetest.Start(t, os.Args[0], env).URL
}

// Each one-process command of both READMEs starts the app (on a free
// port, with this test's SMTP server for SMTP_ADDR): a sign-up is mailed,
// or logged and done without SMTP_ADDR.
func TestReadmeCommands(t *testing.T) {
	for _, file := range []string{"README.md", "README.es.md"} {
		memory, shared := readmeCommands(t, file)
		require.Len(t, memory, 2, "%s: the one-process commands", file)
		require.Len(t, shared, 2, "%s: the two-process commands", file)
		for _, c := range memory {
			mail := smtptest.Start(t, smtptest.Options{})
			set := map[string]string{}
			_, smtp := c.Get("SMTP_ADDR")
			if smtp {
				set["SMTP_ADDR"] = mail.Addr
			}
			base := startMain(t, c, set)
			id := signUp(t, base, "ada@example.com")
			if smtp {
				mail.WaitMail(t, "ada@example.com", "Hello Ada")
			}
			for deadline := time.Now().Add(20 * time.Second); getTask(t, base, id).State != tasks.Succeeded; time.Sleep(50 * time.Millisecond) {
				require.False(t, time.Now().After(deadline), "%s: the welcome task did not succeed", c.Line)
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
	for _, c := range cmds {
		base := startMain(t, c, map[string]string{"ADDR": "", // a free port instead
			"REDIS_URL": "redis://" + db.Opts.Addr, "REDIS_PREFIX": db.Prefix, "SMTP_ADDR": mail.Addr, "WORKERS": "2"})
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

// The variables both READMEs document are exactly those the app reads,
// and their commands set no others.
func TestReadmesDocumentTheEnvironment(t *testing.T) {
	readmetest.EnvTable(t, func(getenv func(string) string) { _, _ = loadConfig(getenv) })
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
