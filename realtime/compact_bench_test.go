//go:build unix

package realtime

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
)

// BenchmarkCompactDelivery is BenchmarkQuietRoom with 1,000 members that
// all negotiated rtkit.compact ("compact") or none ("plain"): the server
// publishes one message and waits until every member has it before the
// next, so every delivery is a frame and a write of its own. The
// difference between the two is the cost of the array form (one more
// encoding per message, shorter frames to write and read). cpu-µs/delivery
// is the process's CPU time (the hub's and the members' readers) per
// delivery; frame-B/msg the frame one member reads per message.
func BenchmarkCompactDelivery(b *testing.B) {
	for _, compact := range []bool{false, true} {
		name := "plain"
		if compact {
			name = "compact"
		}
		b.Run(name, func(b *testing.B) { benchDelivery(b, 1000, compact, false) })
	}
}

// benchDelivery has the server publish to a room of members, one message
// at a time, each member joined with presence or not and having
// negotiated rtkit.compact or not.
func benchDelivery(b *testing.B, members int, compact, presence bool) {
	h := NewHub(Options{MaxConnsPerUser: members + 1, OriginPatterns: []string{"*"}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()
	opts := &websocket.DialOptions{}
	if compact {
		opts.Subprotocols = []string{CompactSubprotocol}
	}
	var got, read atomic.Int64
	done := make(chan struct{}, 1)
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	for range members {
		ws, _, err := websocket.Dial(ctx, url, opts)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, ws)
		r := &raw{t: b, ws: ws}
		r.welcome()
		r.send(map[string]any{"op": "join", "room": "quiet", "id": 1, "presence": presence})
		r.reply(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, frame, err := ws.Read(ctx)
				if err != nil {
					return
				}
				if frame[0] == '[' || bytes.HasPrefix(frame, []byte(`{"op":"msg"`)) {
					read.Add(int64(len(frame)))
					if got.Add(1)%int64(members) == 0 {
						done <- struct{}{}
					}
				}
			}
		}()
	}
	payload := map[string]int64{"seq": 1, "ts": time.Now().UnixNano()}
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := h.Publish(ctx, "quiet", payload); err != nil {
			b.Fatal(err)
		}
		<-done
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*members), "cpu-µs/delivery")
	b.ReportMetric(float64(read.Load())/float64(b.N*members), "frame-B/msg")
	for _, ws := range conns {
		_ = ws.CloseNow()
	}
	wg.Wait()
}

// BenchmarkFrameEncode is the once-per-message-per-node cost of each form
// of a member's message, from its backplane envelope.
func BenchmarkFrameEncode(b *testing.B) {
	msg := &rtkit.Message{ID: rtkit.ID{MS: 1796188090099, Seq: 1}, Time: time.UnixMilli(1796188090099),
		Data: msgEnvelope(opMsg, "room", Sender{User: "ada", Conn: "0193c2f0-0000-7000-8000-000000000000"}, []byte(`{"seq":10001,"ts":1796188090099000000}`))}
	b.Run("object", func(b *testing.B) {
		for range b.N {
			clientFrame("room", msg)
		}
	})
	b.Run("compact", func(b *testing.B) {
		for range b.N {
			compactFrame("room", msg)
		}
	})
}
