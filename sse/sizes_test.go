package sse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/heaptest"
	"github.com/stretchr/testify/require"
)

// With default options, any event Publish accepts reaches a reader that
// keeps up: a 1 MiB event, and 600 KB of one-character lines (whose
// framing, "data: " per line, is four times their size).
func TestLargeEventsReachStreamsWithDefaults(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{})
	ev := subscribe(t, url+"?topic=big", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	big := bytes.Repeat([]byte("x"), 1<<20)
	lines := bytes.Repeat([]byte("y\n"), 300_000)
	_, err := b.Publish(context.Background(), "big", Event{Data: big})
	require.NoError(t, err)
	ev.waitData(t, "", 1)
	_, err = b.Publish(context.Background(), "big", Event{Data: lines})
	require.NoError(t, err)
	got := ev.waitData(t, "", 2)
	require.Equal(t, len(big), len(got[0]))
	require.Equal(t, len(lines), len(got[1]))
	require.Zero(t, b.Stats().Dropped)
}

// A slow consumer that is dropped while it still reads gets whole events,
// the retry hint and a clean end of the chunked body, not a connection cut
// in the middle of an event.
func TestDroppedStreamEndsCleanly(t *testing.T) {
	t.Parallel()
	b := NewBroker(Options{QueueBytes: 16 << 10})
	srv := httptest.NewUnstartedServer(b)
	srv.Listener = heaptest.Listener{Listener: srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
		srv.Close()
	})
	client := heaptest.Client()
	resp, err := client.Get(srv.URL + "?topic=flood")
	require.NoError(t, err)
	defer resp.Body.Close()
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	event := bytes.Repeat([]byte("z"), 8<<10)
	for b.Stats().Dropped == 0 {
		_, err := b.Publish(context.Background(), "flood", Event{Data: event})
		require.NoError(t, err)
	}
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the body ends cleanly")
	require.True(t, strings.HasSuffix(string(body), "\n\n"))
	last := string(body[strings.LastIndex(strings.TrimSuffix(string(body), "\n\n"), "\n\n")+2:])
	require.True(t, strings.HasPrefix(last, "retry: "), "the stream ends with the retry hint, got %q", last)
	for _, e := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		if strings.Contains(e, "data: ") {
			require.Contains(t, e, "data: "+string(event), "every event is whole")
		}
	}
}

// Events written while the reader does not read (the first written by
// Publish's goroutine without waiting, on a quiet topic, until the
// socket is full; the rest by the stream's writer, after what the socket
// did not take) arrive whole and in order once it reads.
func TestEventsReachAReaderThatPaused(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{QueueBytes: 16 << 20})
	resp, err := http.Get(url + "?topic=paused")
	require.NoError(t, err)
	defer resp.Body.Close()
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	const events = 24
	for i := range events {
		data := bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
		_, err := b.Publish(context.Background(), "paused", Event{Data: data})
		require.NoError(t, err)
	}
	p := NewParser(resp.Body, 0)
	for i := 0; i < events; {
		e, err := p.Next()
		require.NoError(t, err)
		if e.Data == nil {
			continue // the stream's opening id
		}
		require.Equal(t, string(bytes.Repeat([]byte{byte('a' + i)}, 256<<10)), string(e.Data), "event %d", i)
		i++
	}
	waitFor(t, func() bool { return b.Stats().Written == events })
	require.Zero(t, b.Stats().Dropped)
}

// Bursts to many streams of a topic (written by the flush workers one
// event or several at a time, or by writer goroutines when they fall
// behind) reach every stream whole, in order, with each event's id.
func TestBurstsReachEveryStreamInOrder(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{})
	const streams, n = 40, 300
	evs := make([]*events, streams)
	for i := range evs {
		evs[i] = subscribe(t, url+"?topic=burst", ClientOptions{})
	}
	waitFor(t, func() bool { return b.Stats().Streams == streams })
	var want, ids []string
	for i := range n {
		d := fmt.Sprintf("burst-%d", i)
		id, err := b.Publish(context.Background(), "burst", Event{Data: []byte(d)})
		require.NoError(t, err)
		want, ids = append(want, d), append(ids, id.String())
	}
	for _, ev := range evs {
		require.Equal(t, want, ev.waitData(t, "", n))
		var got []string
		for _, e := range ev.list() {
			if e.Data != nil {
				got = append(got, e.ID)
			}
		}
		require.Equal(t, ids, got)
	}
	waitFor(t, func() bool { return b.Stats().Written == streams*n })
}
