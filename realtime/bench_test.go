package realtime

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkFanout measures deliveries per second to members of one room:
// b.N messages published by the server to `members` WebSocket clients on
// loopback, with at most 64 messages not yet delivered to everyone. The
// clients count the objects in each frame. See bench/ for the comparison
// with other servers, run in separate processes.
func BenchmarkFanout(b *testing.B) {
	for _, members := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) { benchFanout(b, members) })
	}
}

func benchFanout(b *testing.B, members int) {
	h := NewHub(Options{MaxConnsPerUser: members + 1, OriginPatterns: []string{"*"}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()

	var delivered atomic.Int64
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	for range members {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(-1)
		conns = append(conns, ws)
		if _, _, err := ws.Read(ctx); err != nil { // welcome
			b.Fatal(err)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":"join","id":1,"room":"bench"}`)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil { // ok (and maybe presence)
			b.Fatal(err)
		}
		wg.Go(func() {
			for {
				_, frame, err := ws.Read(ctx)
				if err != nil {
					return
				}
				n := int64(bytes.Count(frame, []byte(`"op":"msg"`)))
				delivered.Add(n)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let presence events pass
	base := delivered.Load()
	const window = 64
	payload := map[string]any{"text": "hello, room", "n": 0}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for int64(i-window)*int64(members) > delivered.Load()-base {
			time.Sleep(50 * time.Microsecond)
		}
		if _, err := h.Publish(ctx, "bench", payload); err != nil {
			b.Fatal(err)
		}
	}
	for delivered.Load()-base < int64(b.N)*int64(members) {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(int64(b.N)*int64(members))/time.Since(start).Seconds(), "deliveries/s")
	st := h.Stats()
	b.ReportMetric(float64(st.ObjectsOut)/float64(max(st.FramesOut, 1)), "objects/frame")
	b.StopTimer()
	for _, ws := range conns {
		_ = ws.CloseNow()
	}
	wg.Wait()
}

// BenchmarkWireBytes measures the bytes the server writes per delivery of
// a message it publishes (Hub.Publish) to one member that reads each
// before the next: one message per frame, as in a quiet room. The payload
// is bench/'s, {"seq":N,"ts":UNIXNANOS} (37 bytes); wire-B/msg includes
// the WebSocket frame header. "compact" is a client that negotiated
// rtkit.compact (arrays instead of objects); "deflate" compresses every
// frame (threshold 64 bytes, the client asking for it); "-burst" publishes
// 16 at a time, so that frames carry several messages.
func BenchmarkWireBytes(b *testing.B) {
	for _, tc := range []struct {
		name             string
		compact, deflate bool
		burst            int
	}{
		{"plain", false, false, 1}, {"compact", true, false, 1}, {"deflate", false, true, 1}, {"compact-deflate", true, true, 1},
		{"plain-burst", false, false, 16}, {"compact-burst", true, false, 16}, {"deflate-burst", false, true, 16}, {"compact-deflate-burst", true, true, 16},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, url, written := countedHub(b, Options{OriginPatterns: []string{"*"}, Compression: tc.deflate, CompressionThreshold: 64})
			ctx := context.Background()
			opts := &websocket.DialOptions{}
			if tc.compact {
				opts.Subprotocols = []string{CompactSubprotocol}
			}
			if tc.deflate {
				opts.CompressionMode = websocket.CompressionNoContextTakeover
			}
			ws, _, err := websocket.Dial(ctx, url, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer ws.CloseNow()
			r := &raw{t: b, ws: ws}
			r.welcome()
			r.send(map[string]any{"op": "join", "room": "room", "id": 1})
			r.reply(1)
			b.ResetTimer()
			before := written.Load()
			ts := time.Now().UnixNano()
			for i := 0; i < b.N; i += tc.burst {
				for k := range tc.burst {
					if _, err := h.Publish(ctx, "room", map[string]int64{"seq": int64(10000 + i + k), "ts": ts}); err != nil {
						b.Fatal(err)
					}
				}
				for range tc.burst {
					r.until("msg")
				}
			}
			b.StopTimer()
			sent := (b.N + tc.burst - 1) / tc.burst * tc.burst
			b.ReportMetric(float64(written.Load()-before)/float64(sent), "wire-B/msg")
		})
	}
}
