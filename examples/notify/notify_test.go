package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/rtkit/rtkit/examples/internal/ssetest"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runMain() {
		return
	}
	code := m.Run()
	// Keep-alive connections of http.DefaultClient to servers the tests
	// stopped end on their own, a moment later; close them now instead.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// startApp runs the app as main does, on a loopback port, configured by
// the environment variables kv, until the test ends.
func startApp(t *testing.T, kv ...string) (*app, string) {
	t.Helper()
	cfg, err := loadConfig(env(kv...))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := newApp(cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, a) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return a, "http://" + ln.Addr().String()
}

// call sends a JSON request and decodes the JSON answer into out.
func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

type sent struct{ Stored, Live, Mail int }

func post(t *testing.T, base, kind, text, to string) sent {
	t.Helper()
	var s sent
	body, _ := json.Marshal(map[string]string{"kind": kind, "text": text, "to": to})
	require.Equal(t, http.StatusOK, call(t, "POST", base+"/api/events", string(body), &s))
	return s
}

type inbox struct {
	Unread int
	Items  []notification
}

func getInbox(t *testing.T, base, user string) inbox {
	t.Helper()
	var in inbox
	require.Equal(t, http.StatusOK, call(t, "GET", base+"/api/notifications?user="+user, "", &in))
	return in
}

// dialWS connects user over WebSocket and joins their notifications.
func dialWS(t *testing.T, base, user string) *realtime.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := realtime.Dial(ctx, base+"/ws?user="+user, realtime.DialOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Join(ctx, "user:"+user, realtime.JoinOptions{})
	require.NoError(t, err)
	return c
}

// nextWS returns the next notification c receives.
func nextWS(t *testing.T, c *realtime.Client) live {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Op == "msg" {
				var l live
				require.NoError(t, json.Unmarshal(e.Data, &l))
				return l
			}
		case <-timeout:
			t.Fatal("no live notification over WebSocket")
		}
	}
}

// subscribeSSE connects user over SSE, as the page's EventSource does,
// and returns once the stream is open.
func subscribeSSE(t *testing.T, base, user string) <-chan live {
	t.Helper()
	ch := make(chan live, 100)
	ssetest.Subscribe(t, base+"/events?user="+user, func(e sse.Event) error {
		var m struct{ Data live } // the hub's message envelope, as the "msg" event's data
		if e.Type != "msg" {
			return nil
		}
		if err := json.Unmarshal(e.Data, &m); err != nil {
			return err
		}
		ch <- m.Data
		return nil
	})
	return ch
}

func nextSSE(t *testing.T, ch <-chan live) live {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no live notification over SSE")
		return live{}
	}
}

// scheduled returns the mail tasks waiting for their time.
func scheduled(t *testing.T, a *app) []*tasks.Task {
	t.Helper()
	page, err := a.runner.List(context.Background(), tasks.ListOptions{State: tasks.Scheduled})
	require.NoError(t, err)
	return page.Tasks
}

// waitIdle waits until the runner has no task left to run.
func waitIdle(t *testing.T, a *app) map[tasks.State]int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		counts, err := a.runner.Counts(context.Background())
		require.NoError(t, err)
		c := counts[tasks.DefaultQueue]
		if c[tasks.Pending]+c[tasks.Scheduled]+c[tasks.Active]+c[tasks.Retry] == 0 {
			return c
		}
		require.False(t, time.Now().After(deadline), "tasks still waiting: %v", c)
		time.Sleep(20 * time.Millisecond)
	}
}

// Ada is offline, Bob is on a WebSocket, Carol on SSE. Three events inside
// the batching window: Bob and Carol get each one live and no mail; Ada
// gets all three stored as unread and exactly one mail with the three.
func TestOfflineBatchedOnlineLive(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{})
	// A batching window of an hour: the test makes the waiting mail due
	// itself (as the clock would), so that "inside the window" never
	// depends on how fast this machine is.
	a, base := startApp(t, "SMTP_ADDR", mail.Addr, "BATCH_WINDOW", "1h")
	require.Equal(t, http.StatusOK, call(t, "PUT", base+"/api/prefs?user=ada", `{"kinds":["orders","comments","security"],"email":"ada@example.com"}`, nil))
	bob := dialWS(t, base, "bob")
	carol := subscribeSSE(t, base, "carol")

	texts := []string{"Order #1 shipped", "Eve commented on your post", "New sign-in from Lisbon"}
	for i, kind := range kinds {
		s := post(t, base, kind, texts[i], "")
		want := sent{Stored: 3, Live: 2, Mail: 0}
		if i == 0 {
			want.Mail = 1 // the first schedules Ada's mail; the others join it
		}
		assert.Equal(t, want, s, "event %d", i)
	}
	for i, text := range texts {
		w, s := nextWS(t, bob), nextSSE(t, carol)
		assert.Equal(t, text, w.Notification.Text)
		assert.Equal(t, text, s.Notification.Text)
		assert.Equal(t, i+1, w.Unread)
	}
	assert.Equal(t, 3, getInbox(t, base, "ada").Unread)

	waiting := scheduled(t, a)
	require.Len(t, waiting, 1, "one mail task for the batch")
	assert.JSONEq(t, `{"user":"ada"}`, string(waiting[0].Payload))
	assert.Empty(t, mail.MailsTo("ada@example.com"), "not before the window ends")
	_, err := a.runner.Retry(context.Background(), waiting[0].ID) // the hour has passed
	require.NoError(t, err)

	m := mail.WaitMail(t, "ada@example.com", "while you were away")
	assert.Contains(t, m.Data, "Subject: 3 new notification(s)")
	for _, text := range texts {
		assert.Contains(t, m.Data, text)
	}
	counts := waitIdle(t, a)
	assert.Equal(t, 1, counts[tasks.Succeeded], "one task ran")
	assert.Len(t, mail.MailsTo("ada@example.com"), 1, "exactly one mail")
	assert.Empty(t, mail.MailsTo("bob@example.com"), "online users get no mail")
	assert.Empty(t, mail.MailsTo("carol@example.com"), "online users get no mail")
	assert.Equal(t, 3, getInbox(t, base, "ada").Unread, "mailed is not read")
}

// With a short window, the mail goes out by itself once it ends.
func TestBatchWindowEnds(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{})
	_, base := startApp(t, "SMTP_ADDR", mail.Addr, "BATCH_WINDOW", "100ms", "MAIL_FROM", "alerts@example.com")
	assert.Equal(t, sent{Stored: 1, Mail: 1}, post(t, base, "security", "New sign-in", "dan"))
	m := mail.WaitMail(t, "dan@example.com", "New sign-in")
	assert.Equal(t, "alerts@example.com", m.From)
}

// A user who left less than OFFLINE_AFTER ago gets the mail only once that
// much time has passed.
func TestOfflineAfter(t *testing.T) {
	a, base := startApp(t, "BATCH_WINDOW", "1ms", "OFFLINE_AFTER", "1h")
	bob := dialWS(t, base, "bob")
	require.NoError(t, bob.Close())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a.mu.Lock()
		online := a.users["bob"].online
		a.mu.Unlock()
		if online == 0 {
			break
		}
		require.False(t, time.Now().After(deadline), "bob still online")
	}
	assert.Equal(t, sent{Stored: 1, Mail: 1}, post(t, base, "orders", "Order #2 shipped", "bob"))
	waiting := scheduled(t, a)
	require.Len(t, waiting, 1)
	assert.True(t, waiting[0].RunAt.After(time.Now().Add(59*time.Minute)), "due an hour after bob left: %v", waiting[0].RunAt)
}

func TestUnreadAndMarkRead(t *testing.T) {
	_, base := startApp(t)
	for _, text := range []string{"one", "two", "three"} {
		post(t, base, "comments", text, "ada")
	}
	in := getInbox(t, base, "ada")
	require.Len(t, in.Items, 3)
	assert.Equal(t, 3, in.Unread)
	assert.Equal(t, "three", in.Items[0].Text, "newest first")

	ada := dialWS(t, base, "ada") // another tab hears about reads
	var out struct{ Unread int }
	require.Equal(t, http.StatusOK, call(t, "POST", base+"/api/notifications/read?user=ada", `{"ids":[`+jsonInt(in.Items[0].ID)+`]}`, &out))
	assert.Equal(t, 2, out.Unread)
	assert.Equal(t, live{Type: "read", Unread: 2}, nextWS(t, ada))
	require.Equal(t, http.StatusOK, call(t, "POST", base+"/api/notifications/read?user=ada", `{}`, &out))
	assert.Equal(t, 0, out.Unread)
	in = getInbox(t, base, "ada")
	assert.Zero(t, in.Unread)
	assert.True(t, in.Items[2].Read)
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestPreferences(t *testing.T) {
	mail := smtptest.Start(t, smtptest.Options{})
	a, base := startApp(t, "SMTP_ADDR", mail.Addr, "BATCH_WINDOW", "1h")
	var p prefs
	require.Equal(t, http.StatusOK, call(t, "GET", base+"/api/prefs?user=eve", "", &p))
	assert.Equal(t, prefs{Kinds: kinds, Email: "eve@example.com"}, p, "new users get every kind")

	// Eve wants only security notices, and no mail.
	require.Equal(t, http.StatusOK, call(t, "PUT", base+"/api/prefs?user=eve", `{"kinds":["security","security"],"email":""}`, &p))
	assert.Equal(t, prefs{Kinds: []string{"security"}, Email: ""}, p)
	assert.Equal(t, sent{}, post(t, base, "orders", "Order #3", ""), "not subscribed")
	assert.Equal(t, sent{Stored: 1}, post(t, base, "security", "Password changed", ""), "stored, no mail")
	assert.Empty(t, scheduled(t, a))

	for _, body := range []string{`{"kinds":["spam"]}`, `{"kinds":[],"email":"Eve <eve@example.com>"}`, `{`} {
		assert.Equal(t, http.StatusBadRequest, call(t, "PUT", base+"/api/prefs?user=eve", body, nil), body)
	}
	for _, url := range []string{"/api/prefs", "/api/prefs?user=Eve", "/api/notifications?user=" + strings.Repeat("x", 33)} {
		assert.Equal(t, http.StatusBadRequest, call(t, "GET", base+url, "", nil), url)
	}
	for _, body := range []string{`{"kind":"spam","text":"x"}`, `{"kind":"orders","text":""}`, `{"kind":"orders","text":"x","to":"A B"}`} {
		assert.Equal(t, http.StatusBadRequest, call(t, "POST", base+"/api/events", body, nil), body)
	}

	// Nobody reads someone else's notifications.
	ctx := context.Background()
	_, err := realtime.Dial(ctx, base+"/ws", realtime.DialOptions{NoReconnect: true, Logger: slog.New(slog.DiscardHandler)})
	assert.Error(t, err, "no user")
	eve := dialWS(t, base, "eve")
	_, err = eve.Join(ctx, "user:ada", realtime.JoinOptions{})
	var re *realtime.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, realtime.CodeForbidden, re.Code)
}

func TestConfig(t *testing.T) {
	cfg, err := loadConfig(env())
	require.NoError(t, err)
	assert.Equal(t, config{Addr: "127.0.0.1:8080", From: "notify@example.com", Window: time.Minute, OfflineAfter: 2 * time.Minute}, cfg)
	_, err = loadConfig(env("BATCH_WINDOW", "soon", "OFFLINE_AFTER", "-1s", "MAIL_FROM", "x"))
	for _, k := range []string{"BATCH_WINDOW", "OFFLINE_AFTER", "MAIL_FROM"} {
		assert.ErrorContains(t, err, k)
	}
}
