package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

func testConfig() config {
	return config{Addr: "127.0.0.1:0", Secret: []byte("test-secret"), Rooms: []string{"general", "random"},
		BcryptCost: bcrypt.MinCost, MailBatch: 300 * time.Millisecond, AuthBurst: 1000, AuthRate: 1000,
		HubRate: 1000, HubBurst: 1000} // tests send faster than people
}

// redisConfig is cfg on the shared test Redis, under a fresh prefix.
func redisConfig(t *testing.T, cfg config) config {
	t.Helper()
	db := redistest.New(t)
	cfg.RedisURL, cfg.Prefix = os.Getenv("REDIS_URL"), db.Prefix
	if cfg.RedisURL == "" {
		cfg.RedisURL = "redis://" + db.Opts.Addr
	}
	return cfg
}

// startApp runs the app on a loopback server until the test ends.
func startApp(t *testing.T, cfg config) string {
	t.Helper()
	_, base := startAppWith(t, cfg, slog.New(slog.DiscardHandler))
	return base
}

// startAppWith is startApp with a logger, returning the app too.
func startAppWith(t *testing.T, cfg config, log *slog.Logger) (*app, string) {
	t.Helper()
	a, err := newApp(cfg, log)
	require.NoError(t, err)
	srv := httptest.NewServer(a.handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.shutdown(ctx))
		srv.Close()
	})
	return a, srv.URL
}

// post sends body as JSON with the session token (if any) and decodes
// the reply into out (if not nil).
func post(t *testing.T, base, path, token string, body any, out any) *http.Response {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp
}

// sessionToken is the session cookie's value in resp.
func sessionToken(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// register registers handle (password "password-"+handle) and returns
// its session token.
func register(t *testing.T, base, handle string) string {
	t.Helper()
	resp := post(t, base, "/api/register", "", map[string]string{
		"handle": handle, "name": strings.ToUpper(handle[:1]) + handle[1:], "email": handle + "@example.com", "password": "password-" + handle,
	}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	tok := sessionToken(resp)
	require.NotEmpty(t, tok)
	return tok
}

// get fetches path with the token and returns the status and body.
func get(t *testing.T, base, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func dial(t *testing.T, base, token string) *realtime.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set("Cookie", sessionCookie+"="+token)
	c, err := realtime.Dial(ctx, base+"/ws", realtime.DialOptions{HTTPHeader: h, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// call calls method and decodes the reply into out (if not nil).
func call(t *testing.T, c *realtime.Client, method string, data, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Call(ctx, method, data, out), method)
}

// callErr calls method and returns its error's code.
func callErr(t *testing.T, c *realtime.Client, method string, data any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Call(ctx, method, data, nil)
	var e *realtime.Error
	require.ErrorAs(t, err, &e, method)
	return e.Code
}

// enter joins room as c (the membership call, then the hub's join).
func enter(t *testing.T, c *realtime.Client, room string) {
	t.Helper()
	call(t, c, "room.join", map[string]string{"room": room}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Join(ctx, room, realtime.JoinOptions{})
	require.NoError(t, err)
}

// say sends text to room as c and returns the message's ID.
func say(t *testing.T, c *realtime.Client, room, text string) string {
	t.Helper()
	var out struct{ ID string }
	call(t, c, "send", map[string]string{"room": room, "text": text}, &out)
	return out.ID
}

// backlogs keeps, per client, the events nextEvent read but did not
// return, so that waiting for one event loses no other.
var backlogs sync.Map // *realtime.Client -> *[]realtime.Event

// nextEvent returns the first server event (data of a "msg") of kind in
// room that c received and no earlier nextEvent returned.
func nextEvent(t *testing.T, c *realtime.Client, room, kind string) event {
	t.Helper()
	return nextEventFunc(t, c, room, kind, func(event) bool { return true })
}

// nextText is nextEvent for a "msg" with text.
func nextText(t *testing.T, c *realtime.Client, room, text string) event {
	t.Helper()
	return nextEventFunc(t, c, room, "msg", func(e event) bool { return e.Text == text })
}

func nextEventFunc(t *testing.T, c *realtime.Client, room, kind string, ok func(event) bool) event {
	t.Helper()
	v, _ := backlogs.LoadOrStore(c, new([]realtime.Event))
	backlog := v.(*[]realtime.Event)
	match := func(e realtime.Event) (event, bool) {
		var ev event
		if e.Op != "msg" || e.Room != room || e.From.User != "" || json.Unmarshal(e.Data, &ev) != nil || ev.Kind != kind {
			return ev, false
		}
		if ev.ID == "" {
			ev.ID = e.ID.String()
		}
		return ev, ok(ev)
	}
	for i, e := range *backlog {
		if ev, found := match(e); found {
			*backlog = append((*backlog)[:i:i], (*backlog)[i+1:]...)
			return ev
		}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if ev, found := match(e); found {
				return ev
			}
			*backlog = append(*backlog, e)
		case <-timeout:
			t.Fatalf("no %s event in %s", kind, room)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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

func TestPagesAreServed(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	status, page := get(t, base, "/", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, page, "rtkit chat")
	for _, path := range []string{"/app.js", "/style.css", "/rtkit.js", "/dashboard.html", "/uplot/uPlot.iife.min.js", "/uplot/LICENSE", "/healthz", "/readyz"} {
		status, _ := get(t, base, path, "")
		assert.Equal(t, http.StatusOK, status, path)
	}
}

func TestChatOverRedisSurvivesRestart(t *testing.T) {
	cfg := redisConfig(t, testConfig())
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(a.handler())
	ana := register(t, srv.URL, "ana")
	c := dial(t, srv.URL, ana)
	enter(t, c, "general")
	id := say(t, c, "general", "before the restart")
	call(t, c, "room.create", map[string]any{"name": "ops", "private": true}, nil)
	require.NoError(t, c.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.shutdown(ctx))
	srv.Close()

	// A new process on the same Redis knows the user, her session, her
	// rooms and the messages.
	base := startApp(t, cfg)
	status, _ := get(t, base, "/api/session", ana)
	assert.Equal(t, http.StatusOK, status)
	c = dial(t, base, ana)
	var page struct{ Messages []event }
	call(t, c, "history", map[string]string{"room": "general"}, &page)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, id, page.Messages[0].ID)
	assert.Equal(t, "before the restart", page.Messages[0].Text)
	var rooms []roomInfo
	call(t, c, "rooms.list", nil, &rooms)
	assert.Contains(t, rooms, roomInfo{Name: "ops", Private: true, Joined: true})
}
