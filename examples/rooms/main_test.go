package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtkit/rtkit/realtime"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// startRooms serves the example in memory on a loopback port until the
// test ends, and returns its URL.
func startRooms(t *testing.T) string {
	t.Helper()
	hub, closeRedis, err := newHub("", "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(routes(hub))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, hub.Shutdown(ctx))
		srv.Close()
		closeRedis()
	})
	return srv.URL
}

// dial connects as name, like the page does.
func dial(t *testing.T, base, name string, opts realtime.DialOptions) *realtime.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.Logger = slog.New(slog.DiscardHandler)
	c, err := realtime.Dial(ctx, base+"/ws?name="+name, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// next returns c's next event whose Op is op, skipping others.
func next(t *testing.T, c *realtime.Client, op string) realtime.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Op == op {
				return e
			}
		case <-timeout:
			t.Fatalf("no %q event", op)
		}
	}
}

// nextPresence returns what c's next presence diff about user says:
// "join" or "leave".
func nextPresence(t *testing.T, c *realtime.Client, user string) string {
	t.Helper()
	for {
		e := next(t, c, "presence")
		for _, m := range e.Joins {
			if m.User == user {
				return "join"
			}
		}
		for _, m := range e.Leaves {
			if m.User == user {
				return "leave"
			}
		}
	}
}

func text(e realtime.Event) string {
	return strings.TrimSuffix(strings.TrimPrefix(string(e.Data), `{"text":"`), `"}`)
}

func users(t *testing.T, c *realtime.Client, room string) []string {
	t.Helper()
	members, err := c.Presence(context.Background(), room)
	require.NoError(t, err)
	var out []string
	for _, m := range members {
		out = append(out, m.User)
	}
	return out
}

func TestPageAndClientAreServed(t *testing.T) {
	base := startRooms(t)
	for path, want := range map[string]string{"/": "rtkit rooms", "/rtkit.js": "export function connect"} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(body), want, path)
	}
	resp, err := http.Get(base + "/nothing")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestRoomsHistoryPresenceBroadcast(t *testing.T) {
	base := startRooms(t)
	ctx := context.Background()

	// Ada talks in general before anyone else is there.
	ada := dial(t, base, "ada", realtime.DialOptions{})
	_, err := ada.Join(ctx, "general", realtime.JoinOptions{History: 50})
	require.NoError(t, err)
	for _, s := range []string{"one", "two"} {
		_, err := ada.Publish(ctx, "general", map[string]string{"text": s})
		require.NoError(t, err)
		assert.Equal(t, s, text(next(t, ada, "msg"))) // the sender gets its own message too
	}

	// Bob joins and gets the history first, oldest first; Ada sees him come.
	bob := dial(t, base, "bob", realtime.DialOptions{})
	_, err = bob.Join(ctx, "general", realtime.JoinOptions{History: 50})
	require.NoError(t, err)
	for _, want := range []string{"one", "two"} {
		e := next(t, bob, "msg")
		assert.Equal(t, want, text(e))
		assert.Equal(t, "ada", e.From.User)
	}
	assert.Equal(t, "join", nextPresence(t, ada, "bob"))
	assert.Equal(t, []string{"ada", "bob"}, users(t, ada, "general"))

	// Carol is in another room: she gets none of general's messages.
	carol := dial(t, base, "carol", realtime.DialOptions{})
	_, err = carol.Join(ctx, "random", realtime.JoinOptions{})
	require.NoError(t, err)

	// A message reaches everyone in the room, the sender too.
	_, err = bob.Publish(ctx, "general", map[string]string{"text": "hi ada"})
	require.NoError(t, err)
	for _, c := range []*realtime.Client{ada, bob} {
		e := next(t, c, "msg")
		assert.Equal(t, "hi ada", text(e))
		assert.Equal(t, "bob", e.From.User)
	}
	_, err = carol.Publish(ctx, "random", map[string]string{"text": "anyone?"})
	require.NoError(t, err)
	assert.Equal(t, "anyone?", text(next(t, carol, "msg")))
	_, err = ada.Publish(ctx, "general", map[string]string{"text": "ping"})
	require.NoError(t, err)
	assert.Equal(t, "ping", text(next(t, ada, "msg")), "ada gets nothing from random")
	assert.Equal(t, "ping", text(next(t, bob, "msg")))

	// The "rooms" call counts who is where.
	var rooms []struct {
		Name   string
		Online int
	}
	require.NoError(t, ada.Call(ctx, "rooms", nil, &rooms))
	assert.Equal(t, []struct {
		Name   string
		Online int
	}{{"general", 2}, {"random", 1}, {"help", 0}}, rooms)

	// Leaving and closing both tell the room.
	require.NoError(t, bob.Leave(ctx, "general"))
	assert.Equal(t, "leave", nextPresence(t, ada, "bob"))
	_, err = bob.Join(ctx, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	assert.Equal(t, "join", nextPresence(t, ada, "bob"))
	require.NoError(t, bob.Close())
	assert.Equal(t, "leave", nextPresence(t, ada, "bob"))
	assert.Equal(t, []string{"ada"}, users(t, ada, "general"))
}

func TestErrors(t *testing.T) {
	base := startRooms(t)
	ctx := context.Background()

	// A bad name is refused before the upgrade (HTTP 401).
	for _, name := range []string{"", "a%20b", "%3Cscript%3E", strings.Repeat("x", 21)} {
		_, err := realtime.Dial(ctx, base+"/ws?name="+name, realtime.DialOptions{NoReconnect: true})
		assert.ErrorContains(t, err, "401", "name %q", name)
	}

	ada := dial(t, base, "ada", realtime.DialOptions{})
	code := func(err error) string {
		var rerr *realtime.Error
		if !errors.As(err, &rerr) {
			return "not an error reply: " + err.Error()
		}
		return rerr.Code
	}
	_, err := ada.Join(ctx, "nowhere", realtime.JoinOptions{})
	assert.Equal(t, realtime.CodeNotFound, code(err), "join a room that does not exist")
	_, err = ada.Publish(ctx, "random", map[string]string{"text": "hi"})
	assert.Equal(t, realtime.CodeForbidden, code(err), "publish to a room not joined")
	assert.Equal(t, realtime.CodeNotFound, code(ada.Leave(ctx, "help")), "leave a room not joined")
	err = ada.Call(ctx, "no.such.method", nil, nil)
	assert.Equal(t, realtime.CodeNotFound, code(err), "call an unknown method")

	// After all that the connection still works.
	_, err = ada.Join(ctx, "general", realtime.JoinOptions{})
	require.NoError(t, err)
	_, err = ada.Publish(ctx, "general", map[string]string{"text": "still here"})
	require.NoError(t, err)
	assert.Equal(t, "still here", text(next(t, ada, "msg")))
}

// A frame over 4 KiB closes the connection (1009); the client reconnects,
// rejoins after the last message it saw, and misses nothing.
func TestOversizedMessageDisconnectsAndClientRecovers(t *testing.T) {
	base := startRooms(t)
	ctx := context.Background()
	ada := dial(t, base, "ada", realtime.DialOptions{})
	bob := dial(t, base, "bob", realtime.DialOptions{MinBackoff: time.Second, MaxBackoff: 2 * time.Second})
	for _, c := range []*realtime.Client{ada, bob} {
		_, err := c.Join(ctx, "general", realtime.JoinOptions{})
		require.NoError(t, err)
	}
	firstConn := bob.ConnID()

	_, err := bob.Publish(ctx, "general", map[string]string{"text": strings.Repeat("x", 5000)})
	require.ErrorIs(t, err, realtime.ErrDisconnected)
	assert.ErrorContains(t, next(t, bob, "disconnected").Err, "StatusMessageTooBig") // close code 1009

	// Ada talks while Bob is away (his client waits about a second).
	_, err = ada.Publish(ctx, "general", map[string]string{"text": "while you were out"})
	require.NoError(t, err)

	// The recovered message and "connected" (sent once every room is
	// rejoined) come in either order.
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-bob.Events():
			switch e.Op {
			case "msg":
				got = append(got, "msg "+text(e))
			case "connected":
				got = append(got, "connected")
				assert.NotEqual(t, firstConn, e.Conn)
			}
		case <-timeout:
			t.Fatalf("bob did not recover: %q", got)
		}
	}
	assert.ElementsMatch(t, []string{"msg while you were out", "connected"}, got)
	_, err = bob.Publish(ctx, "general", map[string]string{"text": "back"})
	require.NoError(t, err)
	assert.Equal(t, "back", text(next(t, bob, "msg")), "one copy of the missed message, then live ones")
}

// Ctrl-C: the hub closes every WebSocket with 1001 (going away), and the
// client starts reconnecting instead of giving up.
func TestShutdownSaysGoingAway(t *testing.T) {
	hub, closeRedis, err := newHub("", "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer closeRedis()
	srv := httptest.NewServer(routes(hub))
	defer srv.Close()
	ada := dial(t, srv.URL, "ada", realtime.DialOptions{})
	_, err = ada.Join(context.Background(), "general", realtime.JoinOptions{})
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, hub.Shutdown(ctx))
	assert.ErrorContains(t, next(t, ada, "disconnected").Err, "StatusGoingAway") // close code 1001
	resp, err := http.Get(srv.URL + "/ws?name=bob")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "no new connections while stopping")
}
