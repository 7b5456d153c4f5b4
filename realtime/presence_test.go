package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// raiseFileLimit raises RLIMIT_NOFILE to at least n (up to the hard
// limit), or skips the test.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("needs %d open files; the hard limit is %d", n, lim.Max)
	}
	old := lim
	lim.Cur = n
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// dialJoin connects member i (user "u<i>", authenticated by bearer) and
// joins the room, returning the connection and the join's reply.
func dialJoin(ctx context.Context, url string, i int, room string) (*websocket.Conn, map[string]any, error) {
	ws, _, err := websocket.Dial(ctx, url+"?token=u"+strconv.Itoa(i), nil)
	if err != nil {
		return nil, nil, err
	}
	ws.SetReadLimit(-1)
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":"join","id":1,"room":"`+room+`"}`)); err != nil {
		return ws, nil, err
	}
	var reply map[string]any
	err = readUntil(ctx, ws, func(obj map[string]any) bool {
		if obj["op"] != "ok" {
			return false
		}
		reply = obj
		return true
	})
	return ws, reply, err
}

// readUntil reads objects from ws until match returns true; an error
// reply fails.
func readUntil(ctx context.Context, ws *websocket.Conn, match func(obj map[string]any) bool) error {
	for {
		_, frame, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(frame, []byte("\n")) {
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				return err
			}
			if obj["op"] == "error" {
				return fmt.Errorf("error reply: %v", obj)
			}
			if match(obj) {
				return nil
			}
		}
	}
}

// A room of 5,000 members on one node fills without any member dropped as
// a slow consumer, and every member then receives a message. The members
// read nothing while the room fills (as many clients do when busy): what
// presence sends them meanwhile (count events, at most one per
// PresenceInterval) fits in their sockets.
func TestRoomOf5000FillsWithoutDrops(t *testing.T) {
	const n = 5000
	raiseFileLimit(t, 2*n+500)
	h, url := testHub(t, Options{Authenticate: bearer})
	conns := make([]*websocket.Conn, n)
	t.Cleanup(func() {
		for _, ws := range conns {
			if ws != nil {
				_ = ws.CloseNow()
			}
		}
	})
	start := time.Now()
	var g group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			// A liveness guard, not a measure: generous, as a loaded
			// machine under the race detector has taken 97 s to fill.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ws, reply, err := dialJoin(ctx, url, i, "big")
			conns[i] = ws
			if err != nil {
				return err
			}
			// From the 101st member on, the reply has no list.
			if cnt, _ := reply["count"].(float64); cnt < 1 || (cnt > 100) == (reply["members"] != nil) {
				return fmt.Errorf("member %d: join reply with count %v and members %v", i, reply["count"], reply["members"] != nil)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	filled := time.Since(start)
	ctx := context.Background()
	count, err := h.PresenceCount(ctx, "big")
	require.NoError(t, err)
	require.Equal(t, n, count)

	id, err := h.Publish(ctx, "big", "hello")
	require.NoError(t, err)
	want := id.String()
	for i := range n {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			err := readUntil(ctx, conns[i], func(obj map[string]any) bool { return obj["op"] == "msg" && obj["id"] == want })
			if err != nil {
				return fmt.Errorf("member %d: %w", i, err)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait(), "every member receives the message")
	st := h.Stats()
	assert.Zero(t, st.SlowConsumers)
	assert.Equal(t, n, st.Memberships)
	t.Logf("filled in %v; %d objects in %d frames written to %d members (%.1f per member)",
		filled.Round(time.Millisecond), st.ObjectsOut, st.FramesOut, n, float64(st.ObjectsOut)/n)
}

// memberKeys is a member list as comparable strings.
func memberKeys(ms []Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.User+"/"+m.Conn+"/"+m.Meta["name"])
	}
	slices.Sort(out)
	return out
}

// drain keeps c's events flowing (its read loop waits on a full channel).
func drain(c *Client) {
	go func() {
		for range c.Events() {
		}
	}()
}

// Random joins, leaves and disconnects of clients on two hubs that share a
// backplane and a presence store: at quiescence, every joined client's
// list, built from its join snapshot and the diffs since, equals the
// server's.
func TestPresenceDiffsReconstructTheList(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			var urls [2]string
			var hubs [2]*Hub
			opts := Options{Authenticate: bearer, PresenceInterval: 20 * time.Millisecond, PresenceLimit: 1000}
			if store == "memory" {
				opts.Backplane = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
				t.Cleanup(func() { _ = opts.Backplane.Close() })
				opts.Presence = NewMemoryPresence()
				for i := range hubs {
					hubs[i], urls[i] = testHub(t, opts)
				}
			} else {
				db := redistest.New(t)
				for i := range hubs {
					bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: db.Client(t), Prefix: db.Prefix, Logger: slog.New(slog.DiscardHandler)})
					require.NoError(t, err)
					t.Cleanup(func() { _ = bp.Close() })
					pr, err := NewRedisPresence(RedisPresenceOptions{Client: db.Client(t), Prefix: db.Prefix})
					require.NoError(t, err)
					o := opts
					o.Backplane, o.Presence = bp, pr
					hubs[i], urls[i] = testHub(t, o)
				}
			}
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			ctx := context.Background()
			rooms := []string{"p1", "p2"}
			type member struct {
				c      *Client
				joined map[string]bool
			}
			var live []*member
			dial := func() {
				c := dialClient(t, urls[rng.IntN(2)], "u"+strconv.Itoa(rng.IntN(6)))
				drain(c)
				live = append(live, &member{c: c, joined: map[string]bool{}})
			}
			for range 4 {
				dial()
			}
			// Each step either dials or closes a client, or has up to three
			// distinct clients join or leave at once.
			for step := range 100 {
				switch op := rng.IntN(10); {
				case op < 7 && len(live) > 0:
					var g group
					for _, i := range rng.Perm(len(live))[:min(3, len(live))] {
						m, room := live[i], rooms[rng.IntN(2)]
						g.Go(func() error {
							if m.joined[room] {
								delete(m.joined, room)
								return m.c.Leave(ctx, room)
							}
							m.joined[room] = true
							_, err := m.c.Join(ctx, room, JoinOptions{})
							return err
						})
					}
					require.NoError(t, g.Wait(), "step %d", step)
				case op < 8 && len(live) > 0: // disconnect for good
					i := rng.IntN(len(live))
					require.NoError(t, live[i].c.Close())
					live = slices.Delete(live, i, i+1)
				default:
					dial()
				}
			}
			for _, room := range rooms {
				var want []string
				waitFor(t, "the server's list of "+room, func() bool {
					ms, err := hubs[0].Presence(ctx, room)
					require.NoError(t, err)
					want = memberKeys(ms)
					n := 0
					for _, m := range live {
						if m.joined[room] {
							n++
						}
					}
					return len(ms) == n
				})
				t.Logf("%s: %d members, %d clients connected", room, len(want), len(live))
				for i, m := range live {
					if !m.joined[room] {
						continue
					}
					waitFor(t, fmt.Sprintf("client %d's list of %s to match the server's %v", i, room, want), func() bool {
						ms, count, ok := m.c.Members(room)
						return ok && count == len(want) && slices.Equal(memberKeys(ms), want)
					})
				}
			}
		})
	}
}

// A room crosses PresenceLimit upwards (members get counts, no list) and
// back (members fetch the list again and follow the diffs).
func TestPresenceLimitSwitchesBothWays(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, Options{Authenticate: bearer, PresenceInterval: 20 * time.Millisecond, PresenceLimit: 3})
	ctx := context.Background()
	watcher := dialClient(t, url, "watcher")
	drain(watcher)
	res, err := watcher.Join(ctx, "room", JoinOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Count)
	require.Len(t, res.Members, 1)

	raw := dialRaw(t, url, as("raw"))
	raw.welcome()
	raw.send(map[string]any{"op": "join", "id": 1, "room": "room"})
	require.Equal(t, "ok", raw.reply(1)["op"])

	var others []*Client
	for i := range 3 {
		c := dialClient(t, url, "u"+strconv.Itoa(i))
		drain(c)
		res, err := c.Join(ctx, "room", JoinOptions{})
		require.NoError(t, err)
		assert.Equal(t, 3+i, res.Count)
		assert.Equal(t, res.Count <= 3, res.Members != nil, "a list only up to the limit")
		others = append(others, c)
	}
	waitFor(t, "the watcher to see 5 members and no list", func() bool {
		_, count, ok := watcher.Members("room")
		return count == 5 && !ok
	})
	// On the wire: count events carry no lists.
	for {
		p := raw.until("presence")
		if p["count"] == 5.0 {
			assert.NotContains(t, p, "joins")
			assert.NotContains(t, p, "leaves")
			break
		}
	}
	raw.send(map[string]any{"op": "presence", "id": 2, "room": "room"})
	list := raw.reply(2)
	assert.Equal(t, 5.0, list["count"])
	assert.NotContains(t, list, "members", "no list above the limit")

	// Back under the limit: the watcher has the exact list again.
	for _, c := range others[:2] {
		require.NoError(t, c.Leave(ctx, "room"))
	}
	waitFor(t, "the watcher's list after the room shrank", func() bool {
		ms, count, ok := watcher.Members("room")
		return ok && count == 3 && slices.Equal(memberKeys(ms), []string{
			"raw/" + rawConnID(t, ms, "raw") + "/RAW",
			"u2/" + rawConnID(t, ms, "u2") + "/U2",
			"watcher/" + watcher.ConnID() + "/WATCHER",
		})
	})
}

// rawConnID returns the connection of user in ms ("" if absent).
func rawConnID(t *testing.T, ms []Member, user string) string {
	t.Helper()
	for _, m := range ms {
		if m.User == user {
			return m.Conn
		}
	}
	return ""
}

// The Go client's member list, its presence events, and a join without
// presence.
func TestClientMemberList(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, Options{Authenticate: bearer, PresenceInterval: 20 * time.Millisecond})
	ctx := context.Background()
	ada := dialClient(t, url, "ada")
	var mu sync.Mutex
	var events []Event
	go func() {
		for e := range ada.Events() {
			if e.Op == "presence" {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		}
	}()
	_, _, ok := ada.Members("lobby")
	assert.False(t, ok, "not joined")
	res, err := ada.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Count)
	assert.Equal(t, []Member{{User: "ada", Conn: ada.ConnID(), Meta: map[string]string{"name": "ADA"}}}, res.Members)

	bob := dialClient(t, url, "bob")
	drain(bob)
	_, err = bob.Join(ctx, "lobby", JoinOptions{})
	require.NoError(t, err)
	quiet := dialClient(t, url, "quiet")
	quietEvents := collect(quiet)
	qres, err := quiet.Join(ctx, "lobby", JoinOptions{NoPresence: true})
	require.NoError(t, err)
	assert.Equal(t, 3, qres.Count)
	assert.Nil(t, qres.Members)

	want := []string{"ada/" + ada.ConnID() + "/ADA", "bob/" + bob.ConnID() + "/BOB", "quiet/" + quiet.ConnID() + "/QUIET"}
	waitFor(t, "ada's list of three", func() bool {
		ms, count, ok := ada.Members("lobby")
		return ok && count == 3 && slices.Equal(memberKeys(ms), want)
	})
	waitFor(t, "the event with that list", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := events[len(events)-1]
		return last.Room == "lobby" && last.Count == 3 && slices.Equal(memberKeys(last.Members), want)
	})
	require.NoError(t, bob.Close())
	waitFor(t, "bob's departure", func() bool {
		ms, count, ok := ada.Members("lobby")
		return ok && count == 2 && slices.Equal(memberKeys(ms), []string{want[0], want[2]})
	})
	mu.Lock()
	last := events[len(events)-1]
	mu.Unlock()
	require.Len(t, last.Leaves, 1)
	assert.Equal(t, Member{User: "bob", Conn: bob.ConnID()}, last.Leaves[0])

	// The opted-out member got no presence event, and has only its count.
	id, err := ada.Publish(ctx, "lobby", "end")
	require.NoError(t, err)
	quietEvents.waitIDs(t, []rtkit.ID{id})
	assert.Zero(t, quietEvents.count("presence"))
	_, count, ok := quiet.Members("lobby")
	assert.False(t, ok)
	assert.Equal(t, 3, count, "the join reply's count")
}

// Presence events that do not fit in half of the send queue are dropped
// and replaced by one resync event, never a slow-consumer close. The
// connection has no socket: the test plays the writer.
func TestPresenceNeverMakesASlowConsumer(t *testing.T) {
	t.Parallel()
	h := NewHub(Options{SendQueueBytes: 1000})
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	c := &conn{h: h, writing: true} // writing: no writer goroutine is started
	r := &room{name: "r"}
	r.lastCount.Store(-1)
	m := &membership{c: c, room: r, ready: true}
	c.rooms = map[string]*membership{"r": m}
	event := func(n int) *cachedFrame {
		env := presenceEnvelope("r", n, true, []Member{{User: strings.Repeat("u", 100), Conn: "c" + strconv.Itoa(n)}}, nil)
		return r.entry(&rtkit.Message{Topic: "r", Data: env})
	}
	for n := 1; n <= 20; n++ {
		m.deliverPresence(event(n))
	}
	c.mu.Lock()
	assert.False(t, c.closed, "not a slow consumer")
	assert.LessOrEqual(t, c.queued, 500, "presence takes at most half the queue")
	assert.True(t, m.stale)
	queued := len(c.queue)
	// The writer empties the queue: the resync event follows, with the
	// latest count.
	c.queue, c.queued = nil, 0
	require.True(t, c.refillLocked())
	require.Len(t, c.queue, 1)
	assert.JSONEq(t, `{"op":"presence","count":20,"room":"r","resync":true}`, string(c.queue[0]))
	assert.False(t, m.stale)
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	assert.Less(t, queued, 20, "some events were dropped")
	assert.Zero(t, h.Stats().SlowConsumers)

	// Dropped again, then an event that fits brings the resync itself.
	for n := 21; n <= 40; n++ {
		m.deliverPresence(event(n))
	}
	c.mu.Lock()
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	m.deliverPresence(event(41))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.queue, 1)
	assert.JSONEq(t, `{"op":"presence","count":41,"room":"r","resync":true}`, string(c.queue[0]))
	assert.False(t, m.stale)
	assert.False(t, c.refillLocked(), "no resync event left")
	assert.Empty(t, c.backlog)
}
