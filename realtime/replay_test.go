package realtime

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/heaptest"
	"github.com/stretchr/testify/require"
)

// smallBufferHub is testHub with small kernel send buffers, so that what a
// client does not read stays in the server's memory, where it is measured,
// instead of the kernel's.
func smallBufferHub(t testing.TB, opts Options) (*Hub, string) {
	t.Helper()
	return listenerHub(t, opts, func(l net.Listener) net.Listener { return heaptest.Listener{Listener: l} })
}

// Replaying history obeys the connection's byte bound: 50 connections that
// never read, each rejoining 5 rooms with full history from "0-0", grow
// the heap by about what the limits allow (2 × SendQueueBytes per
// connection: what waits and the batch being written; the 64 KiB write
// buffer; 24 bytes per message still to replay; the connection itself),
// not by what the history holds (here 50 × 5 × 1000 messages of 512 B,
// about 150 MiB if queued at once).
func TestReplayMemoryIsBoundedByTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 5 rooms and opens 50 connections")
	}
	const (
		conns, rooms, history, size = 50, 5, 1000, 512
		queueBytes                  = 32 << 10
		perConnOverhead             = 96 << 10 // both ends of a WebSocket in this process, the HTTP server's conn
	)
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{HistorySize: history})
	t.Cleanup(func() { _ = bp.Close() })
	h, url := smallBufferHub(t, Options{Authenticate: bearer, Backplane: bp, SendQueueBytes: queueBytes,
		WriteTimeout: time.Minute, MaxConnsPerUser: conns})
	client := heaptest.Client()
	ctx := context.Background()
	payload := `"` + strings.Repeat("x", size) + `"`
	for r := range rooms {
		for range history {
			_, err := bp.Publish(ctx, fmt.Sprintf("room%d", r), []byte(payload), rtkit.PublishOptions{})
			require.NoError(t, err)
		}
	}
	before := heaptest.InUse()
	for range conns {
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: as("greedy"), HTTPClient: client})
		require.NoError(t, err)
		t.Cleanup(func() { _ = ws.CloseNow() })
		var frame strings.Builder
		for r := range rooms {
			fmt.Fprintf(&frame, `{"op":"join","id":%d,"room":"room%d","since":"0-0"}`+"\n", r+1, r)
		}
		require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(frame.String())))
	}
	waitFor(t, "every join", func() bool { return h.Stats().Memberships == conns*rooms })
	var peak uint64
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, heaptest.InUse())
	}
	grown := int64(peak) - int64(before)
	bound := int64(conns * (2*queueBytes + maxWriteFrame + rooms*history*24 + perConnOverhead))
	t.Logf("heap grew %.1f MiB for %d connections × %d rooms (bound %.1f MiB)", float64(grown)/(1<<20), conns, rooms, float64(bound)/(1<<20))
	if heaptest.RaceEnabled {
		t.Skip("heap figures are checked without the race detector")
	}
	require.Less(t, grown, bound)
}

// Connections are limited per client address (when configured) and per
// node, before the upgrade; a closed connection frees its place.
func TestConnectionLimits(t *testing.T) {
	for _, c := range []struct {
		name   string
		opts   Options
		status int
	}{
		{"per address", Options{Authenticate: bearer, MaxConnsPerIP: 2}, http.StatusTooManyRequests},
		{"per node", Options{Authenticate: bearer, MaxConns: 2}, http.StatusServiceUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, url := testHub(t, c.opts)
			a := dialRaw(t, url, as("a"))
			a.welcome()
			dialRaw(t, url, as("b")).welcome()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: as("c")})
			require.Error(t, err)
			require.Equal(t, c.status, resp.StatusCode)
			_ = a.ws.Close(websocket.StatusNormalClosure, "")
			waitFor(t, "a's place", func() bool { return h.Stats().Connections == 1 })
			dialRaw(t, url, as("c")).welcome()
		})
	}
}
