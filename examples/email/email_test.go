package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/rtkit/rtkit/examples/internal/ssetest"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" { // a child process of TestTwoProcessesShareTheWork
		main()
		os.Exit(0)
	}
	code := m.Run()
	// Keep-alive connections of http.DefaultClient to servers the tests
	// stopped end on their own, a moment later; close them now instead.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// env is a getenv over a map, for loadConfig.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// startApp runs the app as main does, on a loopback port, configured by
// the environment variables kv, until the test ends. It returns its URL.
func startApp(t *testing.T, kv ...string) string {
	t.Helper()
	_, base := runApp(t, kv...)
	return base
}

// runApp is startApp that also returns the app, to look inside.
func runApp(t *testing.T, kv ...string) (*app, string) {
	t.Helper()
	cfg, err := loadConfig(env(kv...))
	require.NoError(t, err)
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.close()
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return a, "http://" + ln.Addr().String()
}

// watch follows the app's task events over SSE, as /tasks does, until the
// test ends. It returns once the stream is subscribed.
func watch(t *testing.T, base string) *eventLog {
	t.Helper()
	log := &eventLog{changed: make(chan struct{}, 1)}
	ssetest.Subscribe(t, base+"/events", func(e sse.Event) error {
		var te tasks.Event
		if err := json.Unmarshal(e.Data, &te); err != nil {
			return err
		}
		log.add(te)
		return nil
	})
	return log
}

// eventLog keeps every task event received.
type eventLog struct {
	mu      sync.Mutex
	events  []tasks.Event
	changed chan struct{}
}

func (l *eventLog) add(e tasks.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// wait waits until done holds for the events so far.
func (l *eventLog) wait(t *testing.T, what string, done func([]tasks.Event) bool) []tasks.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		events := slices.Clone(l.events)
		l.mu.Unlock()
		if done(events) {
			return events
		}
		select {
		case <-l.changed:
		case <-timeout:
			var b strings.Builder
			for _, e := range events[max(0, len(events)-30):] {
				fmt.Fprintf(&b, "\n  %s %s %s attempt %d %s", e.Node, e.Kind, e.TaskID[len(e.TaskID)-8:], e.Attempt, e.Error)
			}
			t.Fatalf("waiting for %s; the last of %d events:%s", what, len(events), b.String())
		}
	}
}

// until waits for an event of kind last of task id and returns the task's
// events up to it.
func until(t *testing.T, log *eventLog, id string, last tasks.EventKind) []tasks.Event {
	t.Helper()
	var got []tasks.Event
	log.wait(t, string(last)+" of "+id, func(events []tasks.Event) bool {
		got = got[:0]
		for _, e := range events {
			if e.TaskID == id {
				if got = append(got, e); e.Kind == last {
					return true
				}
			}
		}
		return false
	})
	return got
}

func kinds(events []tasks.Event) []tasks.EventKind {
	var out []tasks.EventKind
	for _, e := range events {
		if e.Kind != tasks.EventProgress && e.Kind != tasks.EventEnqueued { // enqueued may come after started
			out = append(out, e.Kind)
		}
	}
	return out
}

// signUp posts a sign-up and returns the task ID the app answers with.
func signUp(t *testing.T, base, email string) string {
	t.Helper()
	resp, err := http.Post(base+"/signup", "application/json", strings.NewReader(`{"email":"`+email+`","name":"Ada"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var out struct{ Task, Status string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "/api/tasks/"+out.Task, out.Status)
	return out.Task
}

func getTask(t *testing.T, base, id string) tasks.Task {
	t.Helper()
	resp, err := http.Get(base + "/api/tasks/" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var task tasks.Task
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	return task
}

func TestSignupSendsTheWelcomeMail(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{})
	base := startApp(t, "SMTP_ADDR", mail.Addr)
	events := watch(t, base)

	id := signUp(t, base, "ada@example.com")
	got := until(t, events, id, tasks.EventSucceeded)
	assert.Equal(t, []tasks.EventKind{tasks.EventStarted, tasks.EventSucceeded}, kinds(got))
	m := mail.WaitMail(t, "ada@example.com", "Hello Ada")
	assert.Equal(t, "team@example.com", m.From)
	assert.Contains(t, m.Data, "Subject: Welcome!")

	task := getTask(t, base, id)
	assert.Equal(t, tasks.Succeeded, task.State)
	assert.JSONEq(t, `{"step":"sent","done":3,"total":3}`, string(task.Progress))

	// The page and bad input.
	for path, want := range map[string]int{"/tasks": 200, "/api/tasks": 200, "/api/tasks/nope": 404} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
	}
	for _, body := range []string{`{"email":"not an address"}`, `{"email":"Eve <eve@example.com>"}`, `{`, ``} {
		resp, err := http.Post(base+"/signup", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	}
}

// A mail server that answers "try later" twice: the task is retried with
// a growing delay and the third attempt delivers the mail, once.
func TestFailingTwiceIsRetriedWithBackoff(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{Refuse: func(_ string, n int) *smtp.SMTPError {
		if n <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	}})
	base := startApp(t, "SMTP_ADDR", mail.Addr, "MAIL_BACKOFF", "100ms", "MAIL_ATTEMPTS", "4")
	events := watch(t, base)

	id := signUp(t, base, "flaky@example.com")
	got := until(t, events, id, tasks.EventSucceeded)
	assert.Equal(t, []tasks.EventKind{tasks.EventStarted, tasks.EventRetrying, tasks.EventStarted, tasks.EventRetrying,
		tasks.EventStarted, tasks.EventSucceeded}, kinds(got))
	var retries []tasks.Event
	for i, e := range got {
		if e.Kind == tasks.EventRetrying {
			assert.Contains(t, e.Error, "451")
			for _, next := range got[i+1:] {
				if next.Kind == tasks.EventStarted {
					assert.False(t, next.Time.Before(e.RunAt), "attempt %d started before its backoff ended", next.Attempt)
					break
				}
			}
			retries = append(retries, e)
		}
	}
	require.Len(t, retries, 2)
	assert.Equal(t, []int{1, 2}, []int{retries[0].Attempt, retries[1].Attempt})
	task := getTask(t, base, id)
	assert.Equal(t, tasks.Backoff{Initial: 100 * time.Millisecond, Max: time.Hour, Factor: 2, Jitter: 0.2}, task.Backoff, "the delay doubles")
	assert.Equal(t, 3, task.Attempt)
	mail.WaitMail(t, "flaky@example.com", "Hello Ada")
	assert.Len(t, mail.MailsTo("flaky@example.com"), 1)
	assert.Equal(t, 3, mail.Attempts("flaky@example.com"))
}

// A mail that always fails ends dead after its last attempt; the
// dead-letter list keeps it, and a retry from /tasks gives it a new start.
func TestAlwaysFailingEndsDead(t *testing.T) {
	var mu sync.Mutex
	down := true
	mail := smtptest.Start(t, smtptest.Options{Refuse: func(string, int) *smtp.SMTPError {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "service not available"}
		}
		return nil
	}})
	base := startApp(t, "SMTP_ADDR", mail.Addr, "MAIL_BACKOFF", "10ms", "MAIL_ATTEMPTS", "3")
	events := watch(t, base)

	id := signUp(t, base, "gone@example.com")
	got := until(t, events, id, tasks.EventDead)
	assert.Equal(t, []tasks.EventKind{tasks.EventStarted, tasks.EventRetrying, tasks.EventStarted, tasks.EventRetrying,
		tasks.EventStarted, tasks.EventDead}, kinds(got))
	task := getTask(t, base, id)
	assert.Equal(t, tasks.Dead, task.State)
	assert.Contains(t, task.LastError, "service not available")
	assert.Equal(t, 3, mail.Attempts("gone@example.com"))
	assert.Empty(t, mail.MailsTo("gone@example.com"))

	var list struct {
		Counts map[string]map[tasks.State]int
		Tasks  []tasks.Task
	}
	resp, err := http.Get(base + "/api/tasks")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	assert.Equal(t, 1, list.Counts["welcome"][tasks.Dead])

	// The server is back: retrying the dead task delivers the mail.
	mu.Lock()
	down = false
	mu.Unlock()
	resp, err = http.Post(base+"/api/tasks/"+id+"/retry", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	until(t, events, id, tasks.EventSucceeded)
	mail.WaitMail(t, "gone@example.com", "Hello Ada")
}

// A 5xx reply is final: no retry.
func TestPermanentRefusalIsNotRetried(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{Refuse: func(string, int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}})
	base := startApp(t, "SMTP_ADDR", mail.Addr, "MAIL_BACKOFF", "10ms")
	events := watch(t, base)
	id := signUp(t, base, "nobody@example.com")
	got := until(t, events, id, tasks.EventFailed)
	assert.Equal(t, []tasks.EventKind{tasks.EventStarted, tasks.EventFailed}, kinds(got))
	assert.Equal(t, tasks.Dead, getTask(t, base, id).State)
}

// Without SMTP_ADDR mails are logged, and "flaky"/"fail" addresses show
// retries and the dead-letter list without a mail server.
func TestLogMailerPretends(t *testing.T) {
	base := startApp(t, "MAIL_BACKOFF", "10ms", "MAIL_ATTEMPTS", "3")
	events := watch(t, base)
	flaky, fail := signUp(t, base, "flaky@example.com"), signUp(t, base, "fail@example.com")
	got := until(t, events, flaky, tasks.EventSucceeded)
	assert.Equal(t, []tasks.EventKind{tasks.EventStarted, tasks.EventRetrying, tasks.EventStarted, tasks.EventRetrying,
		tasks.EventStarted, tasks.EventSucceeded}, kinds(got))
	assert.Equal(t, 3, getTask(t, base, flaky).Attempt)
	until(t, events, fail, tasks.EventDead)
}

// The periodic digest mails MAIL_FROM the queue's counts and the dead
// sign-ups.
func TestDigest(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{Refuse: func(to string, _ int) *smtp.SMTPError {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	base := startApp(t, "SMTP_ADDR", mail.Addr, "DIGEST_EVERY", "1s", "MAIL_FROM", "ops@example.com")
	events := watch(t, base)
	until(t, events, signUp(t, base, "ada@example.com"), tasks.EventSucceeded)
	until(t, events, signUp(t, base, "gone@example.com"), tasks.EventFailed)
	m := mail.WaitMail(t, "ops@example.com", "1 sent, 0 waiting, 1 dead")
	assert.Contains(t, m.Data, "Subject: Email digest")
	assert.Contains(t, m.Data, "gone@example.com")
}

func TestConfig(t *testing.T) {
	cfg, err := loadConfig(env())
	require.NoError(t, err)
	assert.Equal(t, config{Addr: "127.0.0.1:8080", RedisPrefix: "email:", From: "team@example.com", Attempts: 4,
		Backoff: 2 * time.Second, DigestEvery: time.Minute, Workers: 4}, cfg)
	_, err = loadConfig(env("MAIL_ATTEMPTS", "0", "MAIL_BACKOFF", "soon", "WORKERS", "x", "DIGEST_EVERY", "-1s", "MAIL_FROM", "a b"))
	for _, k := range []string{"MAIL_ATTEMPTS", "MAIL_BACKOFF", "WORKERS", "DIGEST_EVERY", "MAIL_FROM"} {
		assert.ErrorContains(t, err, k)
	}
}
