package sse

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/heaptest"
	"github.com/stretchr/testify/require"
)

// Resuming from "0-0" replays history a chunk at a time: 50 streams of 5
// topics with full histories that never read grow the heap by about one
// write chunk, 40 bytes per event waiting and the connection per stream
// (the kernel's buffers are made small, so that what is not read stays in
// the server's memory), not by the history (50 × 5 × 1000 events of 512 B,
// about 130 MiB if encoded at once).
func TestResumeMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 5 topics and opens 50 streams")
	}
	const (
		streams, topics, history, size = 50, 5, 1000, 512
		perStreamOverhead              = 96 << 10 // both ends of an HTTP connection in this process
	)
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{HistorySize: history})
	t.Cleanup(func() { _ = bp.Close() })
	b := NewBroker(Options{Backplane: bp, WriteTimeout: time.Minute})
	srv := httptest.NewUnstartedServer(b)
	srv.Listener = heaptest.Listener{Listener: srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
		srv.Close()
	})
	ctx := context.Background()
	var q []string
	for i := range topics {
		name := fmt.Sprintf("t%d", i)
		q = append(q, "topic="+name)
		for range history {
			_, err := b.Publish(ctx, name, Event{Data: []byte(strings.Repeat("x", size))})
			require.NoError(t, err)
		}
	}
	client := heaptest.Client()
	before := heaptest.InUse()
	for range streams {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"?"+strings.Join(q, "&"), nil)
		req.Header.Set("Last-Event-ID", strings.TrimSuffix(strings.Repeat("0-0,", topics), ","))
		resp, err := client.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
	}
	waitFor(t, func() bool { return b.Stats().Streams == streams })
	var peak uint64
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, heaptest.InUse())
	}
	grown := int64(peak) - int64(before)
	bound := int64(streams * (2*writeChunk + topics*history*40 + perStreamOverhead))
	t.Logf("heap grew %.1f MiB for %d streams × %d topics (bound %.1f MiB)", float64(grown)/(1<<20), streams, topics, float64(bound)/(1<<20))
	if heaptest.RaceEnabled {
		t.Skip("heap figures are checked without the race detector")
	}
	require.Less(t, grown, bound)
}
