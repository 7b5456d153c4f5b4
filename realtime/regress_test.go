package realtime

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

func dropUser(h *Hub, user string) {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	for c := range h.conns {
		if c.info.Identity.User == user {
			_ = c.ws.CloseNow()
		}
	}
}

// Regression tests from review: each of these lost messages, leaked
// direct messages or left a request unanswered.

// After inbox_since, the welcome's inbox is the position the client
// resumed from, so the recovered directs that follow are not taken as
// already seen.
func TestWelcomeInboxPrecedesRecoveredDirects(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer})
	bob := dialRaw(t, url, as("bob"))
	bob.welcome()
	bob.send(map[string]any{"op": "direct", "id": 1, "to": "ada", "data": "d1"})
	r := bob.reply(1)
	d1 := r["msg"].(string)
	bob.send(map[string]any{"op": "direct", "id": 2, "to": "ada", "data": "d2"})
	d2 := bob.reply(2)["msg"].(string)

	ada := dialRaw(t, url+"?inbox_since="+d1, as("ada"))
	w := ada.welcome()
	got := ada.until("direct")
	require.Equal(t, d1, w["inbox"])
	require.Equal(t, d2, got["id"])
}

// The Go client recovers the direct messages sent while it was away.
func TestClientRecoversDirectsAcrossReconnect(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	ada, err := Dial(ctx, url, DialOptions{HTTPHeader: as("ada"), MinBackoff: 400 * time.Millisecond, MaxBackoff: 400 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ada.Close() })
	col := collect(ada)
	bob := dialClient(t, url, "bob")
	first, err := bob.Direct(ctx, "ada", "before")
	require.NoError(t, err)
	waitFor(t, "first direct", func() bool { return len(col.ids()) == 1 })

	dropUser(h, "ada")
	waitFor(t, "disconnect", func() bool { return col.count("disconnected") == 1 })
	missed, err := bob.Direct(ctx, "ada", "while away")
	require.NoError(t, err)
	waitFor(t, "reconnect", func() bool { return col.count("connected") == 1 })
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, []rtkit.ID{first, missed}, col.ids(), "the direct sent while disconnected must be recovered")
}

// A user's inbox cannot be joined as a room, even when Authorize allows
// every room.
func TestInboxTopicsAreNotRooms(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer})
	bob := dialRaw(t, url, as("bob"))
	bob.welcome()
	bob.send(map[string]any{"op": "direct", "id": 1, "to": "ada", "data": "secret"})
	bob.reply(1)

	eve := dialRaw(t, url, as("eve"))
	eve.welcome()
	eve.send(map[string]any{"op": "join", "id": 1, "room": "inbox:ada", "since": "0-0"})
	r := eve.reply(1)
	require.Equal(t, "error", r["op"])
	require.Equal(t, CodeBadRequest, r["code"])
}

// Users whose names share a long prefix do not share an inbox.
func TestLongUserNamesGetDistinctInboxes(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	u1, u2 := string(long)+"1", string(long)+"2"
	require.NotEqual(t, inboxTopic(u1), inboxTopic(u2))
	require.NoError(t, rtkit.CheckTopic(inboxTopic(u1)))
}

// A rate-limited request gets its reply with its id (clients wait for it).
func TestRateLimitedReplyKeepsID(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer, InboundRate: 0.001, InboundBurst: 1})
	c := dialRaw(t, url, as("ada"))
	c.welcome()
	c.sendText(`{"op":"presence","id":1,"room":"x"}` + "\n" + `{"op":"presence","id":2,"room":"x"}`)
	c.next()
	second := c.next()
	require.Equal(t, float64(2), second["id"])
	require.Equal(t, CodeRateLimited, second["code"])
}

// Past 64 objects in a frame, each request still gets its (error) reply.
func TestEveryObjectOfALongFrameGetsAReply(t *testing.T) {
	_, url := testHub(t, Options{Authenticate: bearer, InboundBurst: 1000})
	c := dialRaw(t, url, as("ada"))
	c.welcome()
	s := ""
	for i := 1; i <= 66; i++ {
		s += `{"op":"presence","id":` + itoa(int64(i)) + `,"room":"x"}` + "\n"
	}
	c.sendText(s)
	seen := map[float64]bool{}
	for {
		obj, err := c.tryNext(500 * time.Millisecond)
		if err != nil {
			break
		}
		if id, ok := obj["id"].(float64); ok {
			seen[id] = true
		}
	}
	for i := 1; i <= 66; i++ {
		require.True(t, seen[float64(i)], "request %d got no reply", i)
	}
}

// A Join called while the client reconnects is neither rejoined twice nor
// given old history.
func TestClientJoinWhileReconnecting(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	c, err := Dial(ctx, url, DialOptions{HTTPHeader: as("late"), MinBackoff: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	col := collect(c)
	_, err = h.Publish(ctx, "late", "old history") // must not be replayed to a live-only join
	require.NoError(t, err)
	dropUser(h, "late")
	waitFor(t, "disconnect", func() bool { return col.count("disconnected") == 1 })
	_, joinErr := c.Join(ctx, "late", JoinOptions{})
	waitFor(t, "reconnect", func() bool { return col.count("connected") == 1 })
	id, err := h.Publish(ctx, "late", "new")
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, joinErr)
	require.Equal(t, []rtkit.ID{id}, col.ids())
}
