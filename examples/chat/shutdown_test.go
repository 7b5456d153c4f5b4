package main

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dockerBuildArgs are the go build arguments of the Dockerfile's build
// stage, with CGO_ENABLED=0 in the environment (TestDockerfileBuildsAStaticBinary
// checks that the Dockerfile still says so).
var dockerBuildArgs = []string{"build", "-trimpath", "-ldflags=-s -w", "-o"}

// buildChat builds the app as the Dockerfile does, into a temporary
// directory.
func buildChat(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chat")
	cmd := exec.Command("go", append(dockerBuildArgs, bin, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// silentSMTP accepts connections and never answers: a mail task to it
// runs until it is cancelled.
func silentSMTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// SIGTERM with a WebSocket, an SSE stream and a running task open: the
// WebSocket closes with 1001, the stream ends with a retry hint, the task
// is handed back to the store (pending, to run again, its attempt not
// counted), and the process exits 0 within shutdownTimeout.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	bin := buildChat(t)
	addr := freeAddr(t)
	base := "http://" + addr
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ADDR="+addr, "REDIS_URL=redis://"+db.Opts.Addr, "REDIS_PREFIX="+db.Prefix,
		"CHAT_SECRET=s", "SMTP_ADDR="+silentSMTP(t), "CHAT_MAIL_BATCH=100ms", "LOG_FORMAT=json", "LOG_LEVEL=debug")
	var logs syncBuffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "never ready")

	token := register(t, base, "alice")
	register(t, base, "bob") // offline
	alice := dial(t, base, token)
	enter(t, alice, "general")
	say(t, alice, "general", "@bob the mail to you will hang")

	// A raw WebSocket, to see the close code.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set("Cookie", sessionCookie+"="+token)
	ws, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", &websocket.DialOptions{HTTPHeader: h})
	require.NoError(t, err)
	defer ws.CloseNow()
	wsClosed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				wsClosed <- err
				return
			}
		}
	}()

	// An SSE stream.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	type streamEnd struct {
		lines []string
		err   error
	}
	sseEnded := make(chan streamEnd, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		sseEnded <- streamEnd{lines, sc.Err()}
	}()

	// The mail task runs (its SMTP server never answers).
	store, err := tasks.NewRedisStore(tasks.RedisOptions{Client: redis.NewClient(&redis.Options{Addr: db.Opts.Addr}), Prefix: db.Prefix + "tasks:"})
	require.NoError(t, err)
	defer store.Close()
	var mailID string
	require.Eventually(t, func() bool {
		page, err := store.List(ctx, tasks.ListOptions{State: tasks.Active})
		if err != nil || len(page.Tasks) == 0 || page.Tasks[0].Type != mailTask {
			return false
		}
		mailID = page.Tasks[0].ID
		return true
	}, 20*time.Second, 20*time.Millisecond, "the mail task never ran")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err, "exit status; logs:\n%s", logs.String())
	case <-time.After(shutdownTimeout + 10*time.Second):
		t.Fatalf("no exit within the shutdown timeout; logs:\n%s", logs.String())
	}

	select {
	case err := <-wsClosed:
		assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	case <-ctx.Done():
		t.Fatal("the WebSocket was not closed")
	}
	select {
	case end := <-sseEnded:
		require.NoError(t, end.err, "the stream ends cleanly")
		var last string
		for _, l := range end.lines {
			if l != "" {
				last = l
			}
		}
		assert.True(t, strings.HasPrefix(last, "retry:"), "the stream's last line is a retry hint, not %q", last)
	case <-ctx.Done():
		t.Fatal("the SSE stream did not end")
	}
	task, err := store.Get(ctx, mailID)
	require.NoError(t, err)
	// Its SMTP server never answers, so the attempt can only end by the
	// drain cancelling it (its 30s timeout is far off): handed back, never
	// succeeded nor failed.
	assert.Equal(t, tasks.Pending, task.State, "the mail task is handed back to the store, to run again")
	assert.Zero(t, task.Attempt, "the interrupted attempt does not count")
	assert.Contains(t, logs.String(), `"msg":"shutting down"`)
	assert.Contains(t, logs.String(), `"msg":"shut down"`)
}

// While the drain waits for a running task, /readyz already answers 503
// and the WebSockets are closed; afterwards the server accepts nothing.
func TestDrainTurnsReadinessFalseFirst(t *testing.T) {
	t.Parallel()
	a, err := newApp(mailConfig(silentSMTP(t)), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	o, err := newOps(a, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	h := o.handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	readyz := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	require.Equal(t, http.StatusOK, readyz())
	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob")
	enter(t, alice, "general")
	say(t, alice, "general", "@bob the mail to you hangs")
	waitTasks(t, a, tasks.Active, 1)

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- o.drain(ctx, srv) }()
	// Readiness turns false before anything closes: by the time the hub
	// has dropped its connections it reads 503. (Whether the drain is still
	// waiting on the hung task by then is a race, not asserted.)
	require.Eventually(t, func() bool { return a.hub.Stats().Connections == 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusServiceUnavailable, readyz(), "not ready while draining")
	require.NoError(t, <-drained)
	_, err = http.Get(base + "/healthz")
	assert.Error(t, err, "the listener is closed")
}

// The drain hands a running task back: on Redis, the mail that hangs on
// a silent SMTP server when SIGTERM comes is pending again after the
// drain (its interrupted attempt not counted), and the next start of the
// app, with a mail server that answers, sends it once.
func TestDrainHandsRunningTaskBack(t *testing.T) {
	t.Parallel()
	cfg := redisConfig(t, mailConfig(silentSMTP(t)))
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	o, err := newOps(a, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: o.handler()}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob") // offline: mentions mail him
	enter(t, alice, "general")
	say(t, alice, "general", "@bob this mail is sent by the next start")
	// The digest task gathers the mention, then the mail task hangs.
	var running *tasks.Task
	require.Eventually(t, func() bool {
		page, err := a.tasks.List(context.Background(), tasks.ListOptions{State: tasks.Active})
		if err != nil || len(page.Tasks) != 1 || page.Tasks[0].Type != mailTask {
			return false
		}
		running = page.Tasks[0]
		return true
	}, 15*time.Second, 10*time.Millisecond, "the mail task never ran")
	require.Equal(t, 1, running.Attempt)

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	require.NoError(t, o.drain(ctx, srv), "the drain hands the task back within its budget")

	opts, err := redis.ParseURL(cfg.RedisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	store, err := tasks.NewRedisStore(tasks.RedisOptions{Client: rdb, Prefix: cfg.Prefix + "tasks:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close(); _ = rdb.Close() })
	back, err := store.Get(ctx, running.ID)
	require.NoError(t, err)
	assert.Equal(t, tasks.Pending, back.State, "handed back to the store, to run again")
	assert.Zero(t, back.Attempt, "the interrupted attempt does not count")

	// The next start (or another replica) runs it.
	mails := smtptest.Start(t, smtptest.Options{})
	next := cfg
	next.SMTPAddr = mails.Addr
	b, _ := startAppWith(t, next, slog.New(slog.DiscardHandler))
	mails.WaitMail(t, "bob@example.com", "this mail is sent by the next start")
	require.Eventually(t, func() bool {
		task, err := b.tasks.Get(ctx, running.ID)
		return err == nil && task.State == tasks.Succeeded
	}, 10*time.Second, 10*time.Millisecond, "the handed-back task succeeds on the next start")
	done, err := b.tasks.Get(ctx, running.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, done.Attempt, "one counted attempt: the one that sent the mail")
	assert.Len(t, mails.MailsTo("bob@example.com"), 1, "the mail is sent once")
}
