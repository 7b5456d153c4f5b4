package realtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func protocolHub(t *testing.T) string {
	h, url := testHub(t, Options{
		Authenticate: bearer,
		Authorize: func(ctx context.Context, id Identity, a Action) error {
			if a.Room == "secret" && id.User != "admin" {
				return errors.New("no")
			}
			if a.Kind == ActionDirect && a.To == "blocked" {
				return &Error{Code: CodeForbidden, Message: "blocked user"}
			}
			return nil
		},
	})
	h.HandleCall("echo", func(ctx context.Context, c *Call) (any, error) {
		return map[string]any{"got": c.Data, "user": c.Conn.Identity.User}, nil
	})
	h.HandleCall("deny", func(ctx context.Context, c *Call) (any, error) {
		return nil, &Error{Code: CodeForbidden, Message: "not for you"}
	})
	h.HandleCall("fail", func(ctx context.Context, c *Call) (any, error) {
		return nil, errors.New("database exploded: password=hunter2")
	})
	h.HandleCall("panic", func(ctx context.Context, c *Call) (any, error) {
		panic("boom")
	})
	return url
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	url := protocolHub(t)
	c := dialRaw(t, url, as("ada"))
	c.welcome()
	c.send(map[string]any{"op": "join", "id": 100, "room": "joined"})
	require.Equal(t, "ok", c.reply(100)["op"])

	cases := []struct {
		name, in string
		id       float64 // 0: uncorrelated
		code     string
		contains string
	}{
		{"not json", `hello`, 0, CodeBadRequest, "invalid JSON"},
		{"truncated", `{"op":"join","id":1`, 0, CodeBadRequest, "invalid JSON"},
		{"unknown op", `{"op":"fly","id":2}`, 2, CodeBadRequest, "unknown op"},
		{"missing op", `{"id":3}`, 3, CodeBadRequest, "missing"},
		{"id not a number", `{"op":"join","id":"x","room":"r"}`, 0, CodeBadRequest, "id"},
		{"id too big", `{"op":"join","id":9007199254740992,"room":"r"}`, 9007199254740992, CodeBadRequest, "2^53"},
		{"join without room", `{"op":"join","id":4}`, 4, CodeBadRequest, "room"},
		{"join bad room", `{"op":"join","id":5,"room":"a b"}`, 5, CodeBadRequest, "invalid room"},
		{"join bad since", `{"op":"join","id":6,"room":"r","since":"yesterday"}`, 6, CodeBadRequest, "since"},
		{"join negative history", `{"op":"join","id":7,"room":"r","history":-1}`, 7, CodeBadRequest, "history"},
		{"join twice", `{"op":"join","id":8,"room":"joined"}`, 8, CodeBadRequest, "already"},
		{"join forbidden", `{"op":"join","id":9,"room":"secret"}`, 9, CodeForbidden, "join"},
		{"pub without data", `{"op":"pub","id":10,"room":"joined"}`, 10, CodeBadRequest, "data"},
		{"pub not joined", `{"op":"pub","id":11,"room":"other","data":1}`, 11, CodeForbidden, "join"},
		{"leave not joined", `{"op":"leave","id":12,"room":"other"}`, 12, CodeNotFound, "not a member"},
		{"presence not joined", `{"op":"presence","id":13,"room":"other"}`, 13, CodeForbidden, "join"},
		{"direct without to", `{"op":"direct","id":14,"data":1}`, 14, CodeBadRequest, "to"},
		{"direct forbidden", `{"op":"direct","id":15,"to":"blocked","data":1}`, 15, CodeForbidden, "blocked user"},
		{"call unknown", `{"op":"call","id":16,"method":"nope"}`, 16, CodeNotFound, "nope"},
		{"call without method", `{"op":"call","id":17}`, 17, CodeBadRequest, "method"},
		{"call denied", `{"op":"call","id":18,"method":"deny"}`, 18, CodeForbidden, "not for you"},
		{"call fails", `{"op":"call","id":19,"method":"fail"}`, 19, CodeInternal, "failed"},
		{"call panics", `{"op":"call","id":20,"method":"panic"}`, 20, CodeInternal, "failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.sendText(tc.in)
			var obj map[string]any
			for {
				obj = c.next()
				if obj["op"] == "error" {
					break
				}
			}
			assert.Equal(t, tc.code, obj["code"], "%v", obj)
			assert.Contains(t, obj["message"], tc.contains)
			if tc.id != 0 {
				assert.Equal(t, tc.id, obj["id"])
			} else {
				assert.NotContains(t, obj, "id")
			}
			assert.NotContains(t, obj["message"], "hunter2", "internal errors do not leak details")
		})
	}
	// The connection survived every bad request.
	c.t = t
	c.send(map[string]any{"op": "pub", "id": 200, "room": "joined", "data": "still here"})
	assert.Equal(t, "ok", c.reply(200)["op"])
}

func TestProtocolFlow(t *testing.T) {
	t.Parallel()
	url := protocolHub(t)
	ada := dialRaw(t, url, as("ada"))
	w := ada.welcome()
	assert.Equal(t, "ada", w["user"])
	assert.NotEmpty(t, w["conn"])
	assert.Equal(t, true, w["recovered"])
	bob := dialRaw(t, url+"?token=bob", nil) // token in the query
	assert.Equal(t, "bob", bob.welcome()["user"])

	ada.send(map[string]any{"op": "join", "id": 1, "room": "lobby"})
	ok := ada.reply(1)
	assert.Equal(t, "ok", ok["op"])
	assert.Equal(t, true, ok["recovered"])
	assert.Equal(t, "lobby", ok["room"])
	assert.Equal(t, 1.0, ok["count"])
	require.Len(t, ok["members"], 1, "the join reply's snapshot holds the joiner")
	assert.Equal(t, "ada", ok["members"].([]any)[0].(map[string]any)["user"])

	bob.send(map[string]any{"op": "join", "id": 1, "room": "lobby"})
	okBob := bob.reply(1)
	assert.Equal(t, "ok", okBob["op"])
	assert.Equal(t, 2.0, okBob["count"])
	assert.Len(t, okBob["members"], 2)
	// ada gets diffs (her own join, then bob's, maybe in one event).
	var bobJoin map[string]any
	for bobJoin == nil {
		p := ada.until("presence")
		assert.Equal(t, "lobby", p["room"])
		assert.Contains(t, p, "leaves", "a diff carries both lists")
		assert.NotContains(t, p, "time")
		for _, j := range p["joins"].([]any) {
			if j.(map[string]any)["user"] == "bob" {
				bobJoin = j.(map[string]any)
				assert.Equal(t, 2.0, p["count"])
			}
		}
	}
	assert.Equal(t, "BOB", bobJoin["meta"].(map[string]any)["name"])
	assert.NotEmpty(t, bobJoin["conn"])

	// pub: both members get the message with its sender, id and time.
	bob.send(map[string]any{"op": "pub", "id": 2, "room": "lobby", "data": map[string]any{"text": "hi <b>"}})
	okPub := bob.reply(2)
	require.Equal(t, "ok", okPub["op"], "%v", okPub)
	msgID := okPub["msg"].(string)
	for _, c := range []*raw{ada, bob} {
		m := c.until("msg")
		assert.Equal(t, "lobby", m["room"])
		assert.Equal(t, msgID, m["id"])
		assert.Equal(t, "bob", m["from"].(map[string]any)["user"])
		assert.Equal(t, "hi <b>", m["data"].(map[string]any)["text"])
		assert.NotContains(t, m, "time", "the time of a message with an ID is the ID's milliseconds")
		id, err := rtkit.ParseID(msgID)
		require.NoError(t, err)
		assert.InDelta(t, float64(time.Now().UnixMilli()), float64(id.MS), 60000)
	}

	// Ephemeral: delivered, flagged, no id.
	ada.send(map[string]any{"op": "pub", "id": 3, "room": "lobby", "data": "typing", "ephemeral": true})
	assert.NotContains(t, ada.reply(3), "msg")
	typing := bob.until("msg")
	assert.Equal(t, true, typing["ephemeral"])
	assert.NotContains(t, typing, "id")

	// presence list.
	ada.send(map[string]any{"op": "presence", "id": 4, "room": "lobby"})
	list := ada.reply(4)
	assert.Equal(t, 2.0, list["count"])
	members := list["members"].([]any)
	require.Len(t, members, 2)
	assert.Equal(t, "ada", members[0].(map[string]any)["user"])
	assert.Equal(t, "bob", members[1].(map[string]any)["user"])

	// direct: to every connection of the user.
	bob2 := dialRaw(t, url, as("bob"))
	bob2.welcome()
	ada.send(map[string]any{"op": "direct", "id": 5, "to": "bob", "data": "psst"})
	dID := ada.reply(5)["msg"]
	for _, c := range []*raw{bob, bob2} {
		d := c.until("direct")
		assert.Equal(t, "psst", d["data"])
		assert.Equal(t, dID, d["id"])
		assert.Equal(t, "ada", d["from"].(map[string]any)["user"])
	}

	// call.
	ada.send(map[string]any{"op": "call", "id": 6, "method": "echo", "data": []int{1, 2}})
	res := ada.reply(6)
	assert.Equal(t, "ok", res["op"])
	assert.Equal(t, map[string]any{"got": []any{1.0, 2.0}, "user": "ada"}, res["data"])

	// Several objects in one frame are all handled, in order.
	ada.sendText(`{"op":"pub","id":7,"room":"lobby","data":1}` + "\n" + `{"op":"pub","id":8,"room":"lobby","data":2}`)
	assert.Equal(t, "ok", ada.reply(7)["op"])
	assert.Equal(t, "ok", ada.reply(8)["op"])

	// leave: ok, and the others see the departure.
	bob.send(map[string]any{"op": "leave", "id": 9, "room": "lobby"})
	assert.Equal(t, "ok", bob.reply(9)["op"])
	for {
		p := ada.until("presence")
		if l := p["leaves"].([]any); len(l) > 0 {
			assert.Equal(t, "bob", l[0].(map[string]any)["user"])
			assert.NotContains(t, l[0], "meta", "a leave names the user and connection only")
			assert.Equal(t, 1.0, p["count"])
			break
		}
	}
}

func TestJoinHistoryAndSince(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id, err := h.Publish(ctx, "news", map[string]int{"n": i})
		require.NoError(t, err)
		ids = append(ids, id.String())
	}
	c := dialRaw(t, url, as("ada"))
	c.welcome()
	c.send(map[string]any{"op": "join", "id": 1, "room": "news", "history": 2})
	ok := c.next()
	assert.Equal(t, "ok", ok["op"], "the reply comes before the history")
	assert.Equal(t, ids[4], ok["position"])
	assert.Equal(t, ids[3], c.next()["id"])
	assert.Equal(t, ids[4], c.next()["id"])

	c2 := dialRaw(t, url, as("bob"))
	c2.welcome()
	c2.send(map[string]any{"op": "join", "id": 1, "room": "news", "since": ids[1]})
	ok = c2.next()
	assert.Equal(t, true, ok["recovered"])
	for _, want := range ids[2:] {
		m := c2.next()
		assert.Equal(t, want, m["id"])
		assert.NotContains(t, m, "from", "server messages have no sender")
	}
	hist, err := h.History(ctx, "news", 10)
	require.NoError(t, err)
	require.Len(t, hist, 5)
	assert.JSONEq(t, `{"n":4}`, string(hist[4].Data))
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, Options{Authenticate: bearer, OriginPatterns: []string{"app.example.com"}})
	httpURL := "http" + strings.TrimPrefix(url, "ws")
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"bad token", as("bad"), http.StatusUnauthorized},
		{"forbidden", as("banned"), http.StatusForbidden},
		{"foreign origin", http.Header{"Authorization": {"Bearer ada"}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: tc.header})
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}
	// An allowed foreign origin connects.
	c := dialRaw(t, url, http.Header{"Authorization": {"Bearer ada"}, "Origin": {"https://app.example.com"}})
	c.welcome()
	// Plain HTTP without an upgrade is refused, after authentication.
	resp, err := http.Get(httpURL + "?token=ada")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
}

func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("MessageSize", func(t *testing.T) {
		_, url := testHub(t, Options{Authenticate: bearer, MaxMessageSize: 1024})
		c := dialRaw(t, url, as("ada"))
		c.welcome()
		c.sendText(`{"op":"call","method":"x","data":"` + strings.Repeat("a", 2000) + `"}`)
		assert.Equal(t, websocket.StatusMessageTooBig, c.closeStatus())
	})
	t.Run("RoomsPerConn", func(t *testing.T) {
		_, url := testHub(t, Options{Authenticate: bearer, MaxRoomsPerConn: 2})
		c := dialRaw(t, url, as("ada"))
		c.welcome()
		for i, room := range []string{"a", "b", "c"} {
			c.send(map[string]any{"op": "join", "id": i + 1, "room": room})
		}
		assert.Equal(t, "ok", c.reply(1)["op"])
		assert.Equal(t, "ok", c.reply(2)["op"])
		r := c.reply(3)
		assert.Equal(t, CodeBadRequest, r["code"])
		assert.Contains(t, r["message"], "too many rooms")
	})
	t.Run("ConnsPerUser", func(t *testing.T) {
		_, url := testHub(t, Options{Authenticate: bearer, MaxConnsPerUser: 2})
		dialRaw(t, url, as("ada")).welcome()
		dialRaw(t, url, as("ada")).welcome()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: as("ada")})
		require.Error(t, err)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		dialRaw(t, url, as("bob")).welcome()
	})
	t.Run("InboundRate", func(t *testing.T) {
		h, url := testHub(t, Options{Authenticate: bearer, InboundRate: 1, InboundBurst: 5})
		c := dialRaw(t, url, as("ada"))
		c.welcome()
		// One frame of 20 objects: the first 5 pass, the rest are refused.
		var b strings.Builder
		for i := range 20 {
			b.WriteString(`{"op":"call","id":` + itoa(int64(i+1)) + `,"method":"nope"}` + "\n")
		}
		c.sendText(b.String())
		codes := map[string]int{}
		for range 20 {
			codes[c.until("error")["code"].(string)]++
		}
		assert.Equal(t, 5, codes[CodeNotFound])
		assert.Equal(t, 15, codes[CodeRateLimited])
		// Keeping on closes the connection.
		for range 2 {
			c.sendText(b.String())
		}
		assert.Equal(t, CloseRateLimited, c.closeStatus())
		assert.Positive(t, h.Stats().RateLimited)
	})
	t.Run("BinaryFrame", func(t *testing.T) {
		_, url := testHub(t, Options{Authenticate: bearer})
		c := dialRaw(t, url, as("ada"))
		c.welcome()
		require.NoError(t, c.ws.Write(context.Background(), websocket.MessageBinary, []byte{1, 2}))
		assert.Equal(t, websocket.StatusUnsupportedData, c.closeStatus())
	})
}

func TestDisconnectKicksEveryConnection(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer})
	a1, a2, b := dialRaw(t, url, as("ada")), dialRaw(t, url, as("ada")), dialRaw(t, url, as("bob"))
	a1.welcome()
	a2.welcome()
	b.welcome()
	require.NoError(t, h.Disconnect(context.Background(), "ada", "bye"))
	assert.Equal(t, CloseKicked, a1.closeStatus())
	assert.Equal(t, CloseKicked, a2.closeStatus())
	b.send(map[string]any{"op": "join", "id": 1, "room": "r"})
	assert.Equal(t, "ok", b.reply(1)["op"], "other users stay")
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	t.Parallel()
	var disconnects atomic.Int32
	h := NewHub(Options{Authenticate: bearer, OnDisconnect: func(ConnInfo, error) { disconnects.Add(1) }})
	srv := httpServer(t, h)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	var conns []*raw
	for _, u := range []string{"ada", "bob", "cy"} {
		c := dialRaw(t, url, as(u))
		c.welcome()
		c.send(map[string]any{"op": "join", "id": 1, "room": "r"})
		c.reply(1)
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	for _, c := range conns {
		assert.Equal(t, websocket.StatusGoingAway, c.closeStatus())
	}
	assert.Equal(t, int32(3), disconnects.Load())
	assert.Zero(t, h.Stats().Connections)
	members, err := h.Presence(ctx, "r")
	require.NoError(t, err)
	assert.Empty(t, members, "presence entries are removed")
	// New connections are refused.
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: as("ada")})
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NoError(t, h.Shutdown(ctx), "Shutdown is idempotent")
}

// A client may send its first frame in the same packet as the upgrade
// request: those bytes, already read by net/http, must reach the hub.
func TestFrameSentWithTheUpgradeRequest(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, Options{Authenticate: bearer})
	addr := strings.TrimPrefix(url, "ws://")
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	payload := []byte(`{"op":"join","id":1,"room":"early"}`)
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(payload))}
	frame = append(frame, mask[:]...)
	for i, c := range payload {
		frame = append(frame, c^mask[i%4])
	}
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ada\r\n\r\n"
	_, err = conn.Write(append([]byte(req), frame...))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), `"op":"ok","id":1`) {
		n, err := conn.Read(buf)
		require.NoError(t, err, "got %q", got)
		got = append(got, buf[:n]...)
	}
}

func TestHubPublishEphemeral(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	id, err := h.Publish(ctx, "board", map[string]int{"n": 1})
	require.NoError(t, err)
	c := dialRaw(t, url, as("ada"))
	c.welcome()
	c.send(map[string]any{"op": "join", "id": 1, "room": "board"})
	c.reply(1)

	require.NoError(t, h.PublishEphemeral(ctx, "board", map[string]int{"cursor": 7}))
	m := c.until("msg")
	assert.Equal(t, true, m["ephemeral"])
	assert.NotContains(t, m, "id", "an ephemeral message has no ID")
	assert.Equal(t, map[string]any{"cursor": float64(7)}, m["data"])
	assert.NotContains(t, m, "from", "server messages have no sender")
	assert.Contains(t, m, "time", "an ephemeral message has no ID to take its time from")

	hist, err := h.History(ctx, "board", 10)
	require.NoError(t, err)
	require.Len(t, hist, 1, "history holds only the durable message")
	assert.Equal(t, id, hist[0].ID)
	assert.Equal(t, int64(1), h.Stats().Published, "ephemeral messages are not counted")

	require.ErrorIs(t, h.PublishEphemeral(ctx, "", 1), rtkit.ErrInvalidTopic, "an invalid room is refused as by Publish")
	require.Error(t, h.PublishEphemeral(ctx, "board", func() {}), "unmarshalable data")
}
