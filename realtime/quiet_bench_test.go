//go:build unix

package realtime

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkQuietRoom measures a quiet room: the server publishes one
// message to 500 members and waits until every member has it before the
// next, so that every frame carries one message and every delivery is a
// write of its own, whatever the machine's load. cpu-µs/delivery is the
// process's CPU time (user + system, getrusage) per delivery: the hub's
// and the members' (coder/websocket readers), so that a change to the
// hub shows as a difference between two runs, not as an absolute.
func BenchmarkQuietRoom(b *testing.B) {
	const members = 500
	h := NewHub(Options{MaxConnsPerUser: members + 1, OriginPatterns: []string{"*"}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	for range members {
		ws, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, ws)
		r := &raw{t: b, ws: ws}
		r.welcome()
		r.send(map[string]any{"op": "join", "room": "quiet", "id": 1})
		r.reply(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, frame, err := ws.Read(ctx)
				if err != nil {
					return
				}
				if strings.Contains(string(frame), `"op":"msg"`) && got.Add(1)%members == 0 {
					done <- struct{}{}
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
	for _, ws := range conns {
		_ = ws.CloseNow()
	}
	wg.Wait()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
