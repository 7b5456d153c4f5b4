package realtime

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// maxJoinHeapPerMember bounds the heap, client and server sides together,
// per member of a room that just filled with readers reading as they go
// (the bench's join5k): about 20 KB are the two ends of a connection and
// the membership; the rest is room for what the writers leave behind,
// well under one 64 KiB write buffer per member (what they once kept
// in the write pool: 246–349 MB for join5k's 5,000 members).
const maxJoinHeapPerMember = 40 << 10

// Filling a large room leaves the heap at a bound per member: what the
// members' writers took to write the presence events and replies of the
// fill is given back, not kept for each member. The heap is read after
// one collection, as the bench's /debug/mem does, so that buffers only
// the pools still hold count.
func TestJoinHeapPerMember(t *testing.T) {
	const n = 3000
	raiseFileLimit(t, 2*n+500)
	h, url := testHub(t, Options{Authenticate: bearer})
	conns := make([]*websocket.Conn, n)
	var readers sync.WaitGroup
	t.Cleanup(func() {
		for _, ws := range conns {
			if ws != nil {
				_ = ws.CloseNow()
			}
		}
		readers.Wait()
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var got atomic.Int64
	const payload = "filled-room-message"
	var g group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, url+"?token=u"+strconv.Itoa(i), nil)
			if err != nil {
				return err
			}
			ws.SetReadLimit(-1)
			conns[i] = ws
			if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":"join","id":1,"room":"big"}`)); err != nil {
				return err
			}
			if err := readUntil(ctx, ws, func(obj map[string]any) bool { return obj["op"] == "ok" }); err != nil {
				return err
			}
			// Read from here on, as a live client does.
			readers.Go(func() {
				for {
					_, frame, err := ws.Read(context.Background())
					if err != nil {
						return
					}
					if bytes.Contains(frame, []byte(payload)) {
						got.Add(1)
					}
				}
			})
			return nil
		})
	}
	require.NoError(t, g.Wait())
	_, err := h.Publish(context.Background(), "big", payload)
	require.NoError(t, err)
	waitFor(t, "every member gets the message", func() bool { return got.Load() == n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapInuse) - int64(before.HeapInuse)) / n
	t.Logf("heap in use grew %.1f MB for %d members: %d B per member (live objects %d B)", float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), n, per,
		(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n)
	require.Less(t, per, int64(maxJoinHeapPerMember))
}
