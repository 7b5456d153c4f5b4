package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

func testConfig() config {
	return config{Addr: "127.0.0.1:0", Secret: []byte("test-secret"), Rooms: []string{"general", "random"}}
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

func login(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/login", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct{ Token string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Token
}

func dial(t *testing.T, base, token string) *realtime.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := realtime.Dial(ctx, base+"/ws?token="+token, realtime.DialOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextMsg(t *testing.T, c *realtime.Client) realtime.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Op == "msg" && !e.Ephemeral {
				return e
			}
		case <-timeout:
			t.Fatal("no message")
		}
	}
}

func TestChat(t *testing.T) {
	base := startApp(t, testConfig())
	ctx := context.Background()

	// The page is served, with a content security policy.
	resp, err := http.Get(base + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(page), "rtkit chat")
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	for _, path := range []string{"/app.js", "/style.css", "/rtkit.js", "/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}

	// Bad names and bad tokens are refused.
	resp, err = http.Post(base+"/api/login", "application/json", strings.NewReader(`{"name":"<script>"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	_, err = realtime.Dial(ctx, base+"/ws?token=ada.9999999999.forged", realtime.DialOptions{NoReconnect: true})
	require.Error(t, err)

	ada := dial(t, base, login(t, base, "ada"))
	_, err = ada.Join(ctx, "general", realtime.JoinOptions{History: 50})
	require.NoError(t, err)
	_, err = ada.Publish(ctx, "general", map[string]string{"text": "first!"})
	require.NoError(t, err)
	assert.Equal(t, `{"text":"first!"}`, string(nextMsg(t, ada).Data))

	// A later arrival gets the recent history on join, then live messages.
	bob := dial(t, base, login(t, base, "bob"))
	_, err = bob.Join(ctx, "general", realtime.JoinOptions{History: 50})
	require.NoError(t, err)
	assert.Equal(t, `{"text":"first!"}`, string(nextMsg(t, bob).Data))
	_, err = ada.Publish(ctx, "general", map[string]string{"text": "hi bob"})
	require.NoError(t, err)
	assert.Equal(t, "ada", nextMsg(t, bob).From.User)

	var rooms []roomInfo
	require.NoError(t, bob.Call(ctx, "rooms.list", nil, &rooms))
	assert.Equal(t, []roomInfo{{Name: "general", Online: 2}, {Name: "random", Online: 0}}, rooms)

	// Profiles are read through the cache: the second read does not reach
	// the "database".
	for range 2 {
		var p profile
		require.NoError(t, bob.Call(ctx, "user.profile", map[string]string{"name": "ada"}, &p))
		assert.Equal(t, "ada", p.Name)
		assert.False(t, p.FirstSeen.IsZero())
	}
	err = bob.Call(ctx, "user.profile", map[string]string{"name": "nobody"}, nil)
	var pe *realtime.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, realtime.CodeNotFound, pe.Code)
	members, err := bob.Presence(ctx, "general")
	require.NoError(t, err)
	assert.Len(t, members, 2)

	// Only the configured rooms exist.
	_, err = bob.Join(ctx, "elsewhere", realtime.JoinOptions{})
	var e *realtime.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, realtime.CodeForbidden, e.Code)
}

func TestChatReplicasShareRoomsOverRedis(t *testing.T) {
	db := redistest.New(t)
	cfg := testConfig()
	cfg.RedisURL, cfg.Prefix = os.Getenv("REDIS_URL"), db.Prefix
	if cfg.RedisURL == "" {
		cfg.RedisURL = "redis://" + db.Opts.Addr
	}
	a, b := startApp(t, cfg), startApp(t, cfg)
	ctx := context.Background()
	ada := dial(t, a, login(t, a, "ada"))
	bob := dial(t, b, login(t, b, "bob")) // a token from either replica works on both
	_, err := ada.Join(ctx, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	_, err = bob.Join(ctx, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	_, err = bob.Publish(ctx, "general", map[string]string{"text": "from replica B"})
	require.NoError(t, err)
	assert.Equal(t, "bob", nextMsg(t, ada).From.User)
	members, err := ada.Presence(ctx, "general")
	require.NoError(t, err)
	assert.Len(t, members, 2, "presence spans replicas")
}

func TestSessionTokens(t *testing.T) {
	secret := []byte("s")
	now := time.Now()
	tok := signToken(secret, "ada", now)
	name, err := verifyToken(secret, tok, now)
	require.NoError(t, err)
	assert.Equal(t, "ada", name)
	for _, bad := range []string{"", "ada", tok + "x", strings.Replace(tok, "ada", "eve", 1), signToken([]byte("other"), "ada", now)} {
		_, err := verifyToken(secret, bad, now)
		assert.ErrorIs(t, err, errBadToken, "%q", bad)
	}
	_, err = verifyToken(secret, tok, now.Add(sessionTTL+time.Minute))
	assert.ErrorIs(t, err, errBadToken, "expired")
}
