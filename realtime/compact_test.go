package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCompactFrame checks the array form of every kind of room message,
// byte for byte, and that it reads (decodeCompact) as the same event as
// the object form the hub sends to other members.
func TestCompactFrame(t *testing.T) {
	t.Parallel()
	id := rtkit.ID{MS: 1796188090099, Seq: 3}
	at := time.UnixMilli(1796188090099)
	ada := Sender{User: "ada", Conn: "c1"}
	for _, tc := range []struct {
		name string
		room string
		msg  *rtkit.Message
		want string // "" for no array form
	}{
		{"server", "room", &rtkit.Message{ID: id, Time: at, Data: msgEnvelope(opMsg, "room", Sender{}, []byte(`{"seq":1}`))},
			`["room","1796188090099-3",{"seq":1}]`},
		{"member", "room", &rtkit.Message{ID: id, Time: at, Data: msgEnvelope(opMsg, "room", ada, []byte(`"hi"`))},
			`["room","1796188090099-3","hi","ada","c1"]`},
		{"ephemeral", "room", &rtkit.Message{Time: at, Data: msgEnvelope(opMsg, "room", ada, []byte(`"typing"`))},
			`["room",1796188090099,"typing","ada","c1"]`},
		{"server ephemeral", "room", &rtkit.Message{Time: at, Data: msgEnvelope(opMsg, "room", Sender{}, []byte(`null`))},
			`["room",1796188090099,null]`},
		{"escaped names", `a"b\c` + "\u2028", &rtkit.Message{ID: id, Time: at,
			Data: msgEnvelope(opMsg, `a"b\c`+"\u2028", Sender{User: `u"}`, Conn: `,"x":`}, []byte(`{"from":{"user":"x"}}`))},
			`["a\"b\\c\u2028","1796188090099-3",{"from":{"user":"x"}},"u\"}",",\"x\":"]`},
		{"foreign json", "room", &rtkit.Message{ID: id, Time: at, Data: []byte("{\n  \"a\": [1, 2]\n}")},
			`["room","1796188090099-3",{"a":[1,2]}]`},
		{"foreign text", "room", &rtkit.Message{ID: id, Time: at, Data: []byte("plain \xff text")},
			`["room","1796188090099-3","plain \ufffd text"]`},
		{"foreign ephemeral", "room", &rtkit.Message{Time: at, Data: []byte(`7`)},
			`["room",1796188090099,7]`},
		{"foreign lookalike", "room", &rtkit.Message{ID: id, Time: at, Data: []byte(`{"op":"kick"}`)},
			`["room","1796188090099-3",{"op":"kick"}]`},
		{"presence", "room", &rtkit.Message{Time: at, Data: presenceEnvelope("room", 2, true, []Member{{User: "ada", Conn: "c1"}}, nil)}, ""},
		{"kick", "room", &rtkit.Message{ID: id, Time: at, Data: kickEnvelope("bye")}, ""},
		{"unknown msg layout", "room", &rtkit.Message{ID: id, Time: at, Data: []byte(EnvelopeMark + `{"op":"msg","data":1,"room":"room"}`)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := compactFrame(tc.room, tc.msg)
			if tc.want == "" {
				assert.Nil(t, got)
				return
			}
			require.Equal(t, tc.want, string(got))
			compact, err := decodeCompact(got)
			require.NoError(t, err)
			var object wireEvent
			require.NoError(t, json.Unmarshal(clientFrame(tc.room, tc.msg), &object))
			require.Equal(t, "msg", object.Op)
			assert.Equal(t, object.Room, compact.Room)
			assert.Equal(t, string(object.ID), string(compact.ID))
			assert.Equal(t, object.From, compact.From)
			assert.JSONEq(t, string(object.Data), string(compact.Data))
			assert.Equal(t, object.Time, compact.Time)
			assert.Equal(t, object.Ephemeral, compact.Ephemeral)
		})
	}
}

// TestDecodeCompactRefuses checks that arrays that are not a msg are
// errors, not events.
func TestDecodeCompactRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		`[]`, `["r"]`, `["r","1-0"]`, `["r","1-0",1,"ada"]`, `[1,"1-0",1]`, `[null,"1-0",1]`,
		`["r",1.5,1]`, `["r",null,1]`, `["r",true,1]`, `["r","1-0",1,2,"c"]`, `["r","1-0",1,"ada",null]`, `["r","1-0",1`,
	} {
		_, err := decodeCompact([]byte(s))
		assert.Error(t, err, s)
	}
	w, err := decodeCompact([]byte(`["r","1-0",1,"ada","c1",{"later":true}]`))
	require.NoError(t, err, "elements after the fifth are ignored")
	assert.Equal(t, Sender{User: "ada", Conn: "c1"}, w.From)
}

// TestCompactAndPlainMembers puts a member that negotiated rtkit.compact
// and one that did not in one room: every kind of room message reaches
// the first as an array and the second as an object, and both read as
// the same message; so does a replay on a rejoin with since.
func TestCompactAndPlainMembers(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	h, url := testHub(t, Options{Authenticate: bearer, Backplane: bp})
	compact, plain, sender := dialRawCompact(t, url, as("cc")), dialRaw(t, url, as("pp")), dialRaw(t, url, as("ada"))
	assert.Empty(t, plain.ws.Subprotocol())
	var senderConn any
	for _, r := range []*raw{compact, plain, sender} {
		senderConn = r.welcome()["conn"]
		r.send(map[string]any{"op": "join", "id": 1, "room": "mix"})
		r.reply(1)
	}
	ctx := context.Background()
	publish := func() {
		t.Helper()
		_, err := h.Publish(ctx, "mix", map[string]int{"n": 1})
		require.NoError(t, err)
		sender.send(map[string]any{"op": "pub", "id": 2, "room": "mix", "data": map[string]string{"text": "hi"}})
		sender.reply(2)
		sender.send(map[string]any{"op": "pub", "id": 3, "room": "mix", "data": "typing", "ephemeral": true})
		sender.reply(3)
		require.NoError(t, h.PublishEphemeral(ctx, "mix", "server typing"))
		_, err = bp.Publish(ctx, "mix", []byte("{\n \"foreign\": [1, 2]\n}"), rtkit.PublishOptions{})
		require.NoError(t, err)
		_, err = bp.Publish(ctx, "mix", []byte("not json"), rtkit.PublishOptions{})
		require.NoError(t, err)
	}
	const n = 6
	msgs := func(r *raw, count int) []map[string]any {
		t.Helper()
		var out []map[string]any
		for range count {
			out = append(out, r.until("msg"))
		}
		return out
	}
	publish()
	got, want := msgs(compact, n), msgs(plain, n)
	for i := range got {
		assert.Equal(t, true, got[i]["_array"], "compact member's msg %d is an array", i)
		assert.Nil(t, want[i]["_array"], "plain member's msg %d is an object", i)
		delete(got[i], "_array")
	}
	require.Equal(t, want, got)
	assert.Equal(t, map[string]any{"op": "msg", "room": "mix", "id": want[0]["id"], "data": map[string]any{"n": 1.0}}, want[0])
	assert.Equal(t, map[string]any{"user": "ada", "conn": senderConn}, want[1]["from"])
	assert.Equal(t, true, want[2]["ephemeral"])
	assert.Equal(t, true, want[3]["ephemeral"])
	assert.Nil(t, want[3]["from"])
	assert.Equal(t, map[string]any{"foreign": []any{1.0, 2.0}}, want[4]["data"])
	assert.Equal(t, "not json", want[5]["data"])

	// The compact member leaves, misses a round, and rejoins after the
	// first message: the replay (history only: no ephemeral messages) is
	// arrays too, and matches what the plain member got live.
	compact.send(map[string]any{"op": "leave", "id": 4, "room": "mix"})
	compact.reply(4)
	publish()
	live := msgs(plain, n)
	compact.send(map[string]any{"op": "join", "id": 5, "room": "mix", "since": want[0]["id"]})
	require.Equal(t, true, compact.reply(5)["recovered"])
	var persisted []map[string]any
	for _, m := range append(want[1:], live...) {
		if m["ephemeral"] == nil {
			persisted = append(persisted, m)
		}
	}
	replayed := msgs(compact, len(persisted))
	for i := range replayed {
		assert.Equal(t, true, replayed[i]["_array"], "replayed msg %d is an array", i)
		delete(replayed[i], "_array")
	}
	require.Equal(t, persisted, replayed)
}

// TestClientCompactAndPlain runs the Go client against a hub that
// negotiates rtkit.compact and against one that answers without it (as
// servers before it did): the events are the same.
func TestClientCompactAndPlain(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	h, url := testHub(t, Options{Authenticate: bearer, Backplane: bp})
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Sec-WebSocket-Protocol")
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	oldURL := "ws" + strings.TrimPrefix(old.URL, "http")

	ctx := context.Background()
	dial := func(url, user string) *Client {
		t.Helper()
		c, err := Dial(ctx, url, DialOptions{HTTPHeader: as(user), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	compact, plain := dial(url, "cc"), dial(oldURL, "pp")
	subprotocol := func(c *Client) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur.ws.Subprotocol()
	}
	require.Equal(t, CompactSubprotocol, subprotocol(compact))
	require.Empty(t, subprotocol(plain))
	for _, c := range []*Client{compact, plain} {
		_, err := c.Join(ctx, "gomix", JoinOptions{NoPresence: true})
		require.NoError(t, err)
	}
	events := func(c *Client, n int) []Event {
		t.Helper()
		var out []Event
		timeout := time.After(10 * time.Second)
		for len(out) < n {
			select {
			case e := <-c.Events():
				if e.Op == "msg" {
					out = append(out, e)
				}
			case <-timeout:
				t.Fatalf("%d of %d messages", len(out), n)
			}
		}
		return out
	}
	_, err := h.Publish(ctx, "gomix", map[string]int{"n": 1})
	require.NoError(t, err)
	_, err = plain.Publish(ctx, "gomix", "hi")
	require.NoError(t, err)
	require.NoError(t, compact.PublishEphemeral(ctx, "gomix", "typing"))
	_, err = bp.Publish(ctx, "gomix", []byte("not json"), rtkit.PublishOptions{})
	require.NoError(t, err)
	got, want := events(compact, 4), events(plain, 4)
	for i := range got {
		got[i].Data = compactJSON(t, got[i].Data)
		want[i].Data = compactJSON(t, want[i].Data)
	}
	require.Equal(t, want, got)
	assert.Equal(t, Sender{}, want[0].From)
	assert.Equal(t, want[0].ID.MS, uint64(want[0].Time.UnixMilli()))
	assert.Equal(t, Sender{User: "pp", Conn: plain.ConnID()}, want[1].From)
	assert.True(t, want[2].Ephemeral)
	assert.True(t, want[2].ID.IsZero())
	assert.Equal(t, Sender{User: "cc", Conn: compact.ConnID()}, want[2].From)
	assert.Equal(t, `"not json"`, string(want[3].Data))

	// Messages published while both are disconnected are recovered by the
	// rejoin's replay, in either form.
	dropConnections(h)
	var ids []rtkit.ID
	for i := range 3 {
		id, err := h.Publish(ctx, "gomix", i)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for _, c := range []*Client{compact, plain} {
		var gotIDs []rtkit.ID
		for _, e := range events(c, 3) {
			gotIDs = append(gotIDs, e.ID)
		}
		assert.Equal(t, ids, gotIDs)
	}
}

func compactJSON(t *testing.T, b []byte) json.RawMessage {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.Compact(&buf, b))
	return buf.Bytes()
}
