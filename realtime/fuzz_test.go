package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"golang.org/x/time/rate"
)

// FuzzHubFrames feeds arbitrary bytes to a real hub as a client frame, and
// the same bytes to a joined room as a payload other code published on the
// backplane; every frame the hub writes back must be UTF-8 and consist of
// lines that are each one JSON object, or, for a second member of the room
// that negotiated rtkit.compact, a room message's array.
func FuzzHubFrames(f *testing.F) {
	for _, s := range []string{
		`{"op":"join","id":1,"room":"lobby"}` + "\n" + `{"op":"pub","id":2,"room":"lobby","data":{"a":"\u00e9"}}`,
		"{\"op\":\"pub\",\"id\":2,\"room\":\"fz\",\"data\":\"\xff\"}",
		"{\"op\":\"join\",\"id\":3,\"room\":\"\xc3\x28\"}",
		`{"op":"direct","id":4,"to":"fuzz","data":"self"}`,
		`{"op":"presence","id":5,"room":"fz"}`,
		`{"op":"call","id":6,"method":"nope"}`,
		"{\n\"op\": \"msg\"}",
		`{"op":"kick"}`,
		"\xed\xa0\x80",
		"\u2028\u2029",
	} {
		f.Add([]byte(s))
	}
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer bp.Close()
	h, url := testHub(f, Options{
		Backplane:    bp,
		Authenticate: func(*http.Request) (Identity, error) { return Identity{User: "fuzz"}, nil },
		InboundRate:  rate.Inf,
	})
	_ = h
	var c, compact *websocket.Conn
	sentinel := uint64(1 << 40)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 32<<10 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, conn := range []**websocket.Conn{&c, &compact} {
			if *conn != nil {
				continue
			}
			opts := &websocket.DialOptions{}
			if conn == &compact {
				opts.Subprotocols = []string{CompactSubprotocol}
			}
			var err error
			if *conn, _, err = websocket.Dial(ctx, url, opts); err != nil {
				t.Fatal(err)
			}
			(*conn).SetReadLimit(-1)
			write(t, ctx, *conn, `{"op":"join","id":1,"room":"fz"}`)
		}
		sentinel++
		write(t, ctx, c, string(frame))
		if _, err := bp.Publish(ctx, "fz", frame, rtkit.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, conn := range []**websocket.Conn{&c, &compact} {
			write(t, ctx, *conn, `{"op":"leave","id":`+itoa(int64(sentinel))+`,"room":"-"}`)
			if !readUntilSentinel(t, ctx, *conn, sentinel) {
				// Closed by the hub (a kick forged by the frame, say): the
				// next input dials again.
				*conn = nil
			}
		}
	})
	for _, conn := range []*websocket.Conn{c, compact} {
		if conn != nil {
			_ = conn.CloseNow()
		}
	}
}

// readUntilSentinel reads frames until the error reply to request
// sentinel, checking every line; it reports false if the connection
// closed first. Array lines must be room messages of rtkit.compact.
func readUntilSentinel(t *testing.T, ctx context.Context, c *websocket.Conn, sentinel uint64) bool {
	t.Helper()
	for {
		_, got, err := c.Read(ctx)
		if err != nil {
			return false
		}
		if !utf8.Valid(got) {
			t.Fatalf("frame is not UTF-8: %q", got)
		}
		done := false
		for line := range bytes.SplitSeq(got, []byte("\n")) {
			if len(line) > 0 && line[0] == '[' && c.Subprotocol() != "" {
				if _, err := decodeCompact(line); err != nil {
					t.Fatalf("line %q of frame %q is not a compact msg: %v", line, got, err)
				}
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				t.Fatalf("line %q of frame %q is not a JSON object: %v", line, got, err)
			}
			if id, _ := obj["id"].(float64); uint64(id) == sentinel && strings.Contains(string(line), `"not_found"`) {
				done = true
			}
		}
		if done {
			return true
		}
	}
}

func write(t *testing.T, ctx context.Context, c *websocket.Conn, s string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// FuzzClientFrames feeds arbitrary bytes to the Go client's frame decoder
// as a frame from the server, in a client that has joined "room": object
// lines and the array lines of rtkit.compact alike. It must not panic or
// leave a goroutine behind, and every message it emits carries JSON data.
func FuzzClientFrames(f *testing.F) {
	for _, s := range []string{
		`["room","1796188090099-0",{"seq":1}]`,
		`["room","1796188090099-1","hi","ada","c1"]`,
		`["room",1796188090099,"typing","ada","c1"]`,
		`["room","1796188090099-2",null,"ada","c1",{"later":1}]` + "\n" + `{"op":"msg","room":"room","id":"1796188090099-3","data":1}`,
		`["room","1796188090099-0",1]` + "\n" + `["room","1796188090099-0",1]`,
		`["room",-1,[]]` + "\n" + `["room",1e3,1]` + "\n" + `["room","x-y",1,"a","b"]`,
		`[` + "\n" + `]`,
		`{"op":"presence","room":"room","count":2,"joins":[{"user":"ada","conn":"c1"}],"leaves":[]}`,
		`{"op":"direct","id":"1-0","data":"psst"}` + "\n\n" + `{"op":"gap","room":"room"}`,
		`{"op":"ok","id":1}` + "\n" + `null` + "\n" + `[null,null,null]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		c := &Client{
			log:       slog.New(slog.DiscardHandler),
			events:    make(chan Event, 16),
			ctx:       ctx,
			cancel:    cancel,
			pending:   make(map[uint64]pendingReq),
			rooms:     map[string]*clientRoom{"room": {joined: true, count: 1, members: map[string]Member{}}},
			connected: make(chan struct{}),
		}
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for e := range c.events {
				if e.Op == "msg" && e.Data != nil && !json.Valid(e.Data) {
					t.Errorf("msg event with data %q that is not JSON", e.Data)
				}
			}
		}()
		c.dispatch(frame)
		cancel()
		c.wg.Wait() // presence fetches end with the client's ctx
		close(c.events)
		<-drained
	})
}
