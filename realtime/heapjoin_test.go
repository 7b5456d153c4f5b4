package realtime

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit/internal/heaptest"
	"github.com/stretchr/testify/require"
)

// maxJoinHeapPerMember bounds the heap, client and server sides together,
// per member of a room that just filled with readers reading as they go
// (as in the bench's join5k). Measured: about 28 KB (both ends of a
// connection, the membership, the presence entry); 40 KB leaves room for
// noise but not for anything kept per member on the scale of a write
// buffer (64 KiB) or a second connection's worth of state.
const maxJoinHeapPerMember = 40 << 10

// Filling a large room leaves the heap within a bound per member. The
// heap is read after one collection, as the bench's /debug/mem does, so
// that buffers only the pools still hold count too. (Which buffer a
// writer takes for a joined frame is checked by TestWriteBufSized: this
// test's writers rarely join objects, the bench's do more often.)
func TestJoinHeapPerMember(t *testing.T) {
	if heaptest.RaceEnabled {
		// The race detector's allocator changes heap figures (and its
		// limit of 8,128 goroutines is close to this test's).
		t.Skip("heap figures are checked without the race detector")
	}
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
			ws, _, err := dialJoin(ctx, url, i, "big")
			conns[i] = ws
			if err != nil {
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
