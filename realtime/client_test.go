package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dialClient(t testing.TB, url, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, DialOptions{HTTPHeader: as(user), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// collect gathers a client's room messages in the background.
type collector struct {
	mu     sync.Mutex
	msgs   []Event
	gaps   int
	events []string
}

func collect(c *Client) *collector {
	col := &collector{}
	go func() {
		for e := range c.Events() {
			col.mu.Lock()
			switch e.Op {
			case "msg", "direct":
				if !e.Ephemeral {
					col.msgs = append(col.msgs, e)
				}
			case "gap":
				col.gaps++
			}
			col.events = append(col.events, e.Op)
			col.mu.Unlock()
		}
	}()
	return col
}

func (col *collector) ids() []rtkit.ID {
	col.mu.Lock()
	defer col.mu.Unlock()
	out := make([]rtkit.ID, len(col.msgs))
	for i, e := range col.msgs {
		out[i] = e.ID
	}
	return out
}

func (col *collector) count(op string) int {
	col.mu.Lock()
	defer col.mu.Unlock()
	n := 0
	for _, e := range col.events {
		if e == op {
			n++
		}
	}
	return n
}

func (col *collector) waitIDs(t testing.TB, want []rtkit.ID) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages", len(want)), func() bool { return len(col.ids()) >= len(want) })
	require.Equal(t, want, col.ids())
}

func TestClientBasics(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer})
	h.HandleCall("add", func(ctx context.Context, c *Call) (any, error) {
		var args [2]int
		if err := json.Unmarshal(c.Data, &args); err != nil {
			return nil, &Error{Code: CodeBadRequest, Message: "want [a, b]"}
		}
		return args[0] + args[1], nil
	})
	ctx := context.Background()
	ada, bob := dialClient(t, url, "ada"), dialClient(t, url, "bob")
	adaCol := collect(ada)
	_, err := ada.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)
	_, err = bob.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)
	_, err = ada.Join(ctx, "lobby", JoinOptions{})
	var e *Error
	require.ErrorAs(t, err, &e, "joining twice")

	id, err := bob.Publish(ctx, "lobby", map[string]string{"text": "hi"})
	require.NoError(t, err)
	adaCol.waitIDs(t, []rtkit.ID{id})
	require.NoError(t, bob.PublishEphemeral(ctx, "lobby", "typing"))

	var sum int
	require.NoError(t, ada.Call(ctx, "add", []int{2, 3}, &sum))
	assert.Equal(t, 5, sum)
	err = ada.Call(ctx, "add", "nope", nil)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, CodeBadRequest, e.Code)

	members, err := ada.Presence(ctx, "lobby")
	require.NoError(t, err)
	require.Len(t, members, 2)
	assert.Equal(t, []string{"ada", "bob"}, []string{members[0].User, members[1].User})

	dID, err := bob.Direct(ctx, "ada", "psst")
	require.NoError(t, err)
	waitFor(t, "the direct message", func() bool { return len(adaCol.ids()) == 2 })
	assert.Equal(t, dID, adaCol.ids()[1])

	require.NoError(t, bob.Leave(ctx, "lobby"))
	_, err = bob.Publish(ctx, "lobby", "after leaving")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, CodeForbidden, e.Code)
}

// dropConnections cuts every connection of the hub at the TCP level, as a
// network failure would.
func dropConnections(h *Hub) {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	for c := range h.conns {
		_ = c.ws.CloseNow()
	}
}

func TestClientRecoversAcrossReconnect(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	sub := dialClient(t, url, "sub")
	col := collect(sub)
	_, err := sub.Join(ctx, "room", JoinOptions{})
	require.NoError(t, err)
	_, err = sub.Join(ctx, "empty-at-join", JoinOptions{})
	require.NoError(t, err)
	firstConn := sub.ConnID()

	// Publish from the server continuously while the subscriber's
	// connection is cut three times.
	var want []rtkit.ID
	var wantEmpty []rtkit.ID
	for round := range 3 {
		for i := range 30 {
			id, err := h.Publish(ctx, "room", fmt.Sprintf("%d-%d", round, i))
			require.NoError(t, err)
			want = append(want, id)
			if i == 15 {
				dropConnections(h)
			}
		}
		id, err := h.Publish(ctx, "empty-at-join", round)
		require.NoError(t, err)
		wantEmpty = append(wantEmpty, id)
		waitFor(t, "reconnection", func() bool { return col.count("connected") > round })
	}
	assert.NotEqual(t, firstConn, sub.ConnID())
	waitFor(t, "every message", func() bool { return len(col.ids()) >= len(want)+len(wantEmpty) })
	var got, gotEmpty []rtkit.ID
	col.mu.Lock()
	for _, e := range col.msgs {
		if e.Room == "room" {
			got = append(got, e.ID)
		} else {
			gotEmpty = append(gotEmpty, e.ID)
		}
	}
	gaps := col.gaps
	col.mu.Unlock()
	assert.Equal(t, want, got, "no gap, no duplicate across reconnects")
	assert.Equal(t, wantEmpty, gotEmpty, "a room empty at join recovers too")
	assert.Zero(t, gaps)
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer, SendQueueBytes: 256 << 10})
	ctx := context.Background()
	slow := dialRaw(t, url, as("slow"))
	slow.welcome()
	slow.send(map[string]any{"op": "join", "id": 1, "room": "r"})
	require.Equal(t, "ok", slow.reply(1)["op"])
	slowPos := ""
	fast := dialClient(t, url, "fast")
	col := collect(fast)
	_, err := fast.Join(ctx, "r", JoinOptions{})
	require.NoError(t, err)

	// The slow member stops reading; the room goes on, at the pace of the
	// fast member. Once the socket buffers toward the slow one are full,
	// its queue overflows.
	big := strings.Repeat("x", 4<<10)
	var want []rtkit.ID
	for i := 0; h.Stats().SlowConsumers == 0; i++ {
		require.Less(t, i, 50000, "the slow member was never disconnected")
		id, err := h.Publish(ctx, "r", map[string]any{"n": i, "pad": big})
		require.NoError(t, err)
		want = append(want, id)
		if i%8 == 7 {
			waitFor(t, "the fast member", func() bool { return len(col.ids()) >= len(want)-8 })
		}
	}
	for range 20 {
		id, err := h.Publish(ctx, "r", map[string]any{"pad": big})
		require.NoError(t, err)
		want = append(want, id)
	}
	// The fast member got everything, in order.
	col.waitIDs(t, want)

	// The slow one, reading again, finds its code at the end.
	var seen []string
	for {
		obj, err := slow.tryNext(10 * time.Second)
		if err != nil {
			assert.Equal(t, CloseSlowConsumer, websocket.CloseStatus(err), "%v", err)
			break
		}
		if obj["op"] == "msg" {
			seen = append(seen, obj["id"].(string))
		}
	}
	if len(seen) > 0 {
		slowPos = seen[len(seen)-1]
	}
	// Reconnecting with the last ID it saw, it recovers all it missed.
	since, err := rtkit.ParseID(slowPos)
	require.NoError(t, err)
	again := dialClient(t, url, "slow")
	againCol := collect(again)
	res, err := again.Join(ctx, "r", JoinOptions{Since: since})
	require.NoError(t, err)
	assert.True(t, res.Recovered)
	var rest []rtkit.ID
	for _, id := range want {
		if id.Compare(since) > 0 {
			rest = append(rest, id)
		}
	}
	againCol.waitIDs(t, rest)
}

func TestTwoHubsOnRedis(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	node := func() (*Hub, string) {
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: db.Client(t), Prefix: db.Prefix, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bp.Close() })
		pr, err := NewRedisPresence(RedisPresenceOptions{Client: db.Client(t), Prefix: db.Prefix})
		require.NoError(t, err)
		return testHub(t, Options{Authenticate: bearer, Backplane: bp, Presence: pr})
	}
	hubA, urlA := node()
	hubB, urlB := node()
	ada := dialClient(t, urlA, "ada")
	bob := dialClient(t, urlB, "bob")
	adaCol, bobCol := collect(ada), collect(bob)
	_, err := ada.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)
	_, err = bob.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)

	id1, err := bob.Publish(ctx, "lobby", "from B")
	require.NoError(t, err)
	id2, err := hubB.Publish(ctx, "lobby", "server on B")
	require.NoError(t, err)
	id3, err := ada.Publish(ctx, "lobby", "from A")
	require.NoError(t, err)
	adaCol.waitIDs(t, []rtkit.ID{id1, id2, id3})
	bobCol.waitIDs(t, []rtkit.ID{id1, id2, id3})

	// Presence sees both nodes, from either.
	for _, c := range []*Client{ada, bob} {
		members, err := c.Presence(ctx, "lobby")
		require.NoError(t, err)
		require.Len(t, members, 2)
		assert.Equal(t, "ada", members[0].User)
		assert.Equal(t, "bob", members[1].User)
	}
	// A direct message crosses nodes.
	dID, err := ada.Direct(ctx, "bob", "psst")
	require.NoError(t, err)
	waitFor(t, "the direct message", func() bool { return len(bobCol.ids()) == 4 })
	assert.Equal(t, dID, bobCol.ids()[3])
	// So does a kick.
	kicked := dialRaw(t, urlA, as("bob"))
	kicked.welcome()
	require.NoError(t, hubA.Disconnect(ctx, "nobody", ""))
	require.NoError(t, hubB.Disconnect(ctx, "bob", "bye"))
	assert.Equal(t, CloseKicked, kicked.closeStatus())
}

func TestRedisPresenceExpiresCrashedNode(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	crashed, err := NewRedisPresence(RedisPresenceOptions{Client: db.Client(t), Prefix: db.Prefix, TTL: time.Second})
	require.NoError(t, err)
	alive, err := NewRedisPresence(RedisPresenceOptions{Client: db.Client(t), Prefix: db.Prefix, TTL: time.Second})
	require.NoError(t, err)
	require.NoError(t, crashed.Add(ctx, "r", Member{User: "ghost", Conn: "c1"}))
	require.NoError(t, alive.Add(ctx, "r", Member{User: "ada", Conn: "c2"}))
	members, err := alive.List(ctx, "r")
	require.NoError(t, err)
	assert.Len(t, members, 2)

	// The crashed node stops refreshing; the live one keeps on.
	deadline := time.Now().Add(1500 * time.Millisecond)
	var expired map[string][]Member
	for time.Now().Before(deadline) {
		e, err := alive.Refresh(ctx, map[string][]string{"r": {"c2"}})
		require.NoError(t, err)
		if len(e["r"]) > 0 {
			expired = e
		}
		time.Sleep(100 * time.Millisecond)
	}
	members, err = alive.List(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, []Member{{User: "ada", Conn: "c2"}}, members, "no ghosts")
	assert.Equal(t, []Member{{User: "ghost", Conn: "c1"}}, expired["r"], "the expiry is reported once, to announce it")
}

func TestClientStopsAfterClose(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, Options{Authenticate: bearer})
	c := dialClient(t, url, "ada")
	require.NoError(t, c.Close())
	_, err := c.Publish(context.Background(), "r", 1)
	assert.True(t, errors.Is(err, ErrClientClosed), "%v", err)
	for range c.Events() {
	}
}
