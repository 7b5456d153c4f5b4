package sse

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

// openStream GETs url with Last-Event-ID and returns its parser.
func openStream(t *testing.T, url, lastID string) *Parser {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return NewParser(resp.Body, 0)
}

func next(t *testing.T, p *Parser) Event {
	t.Helper()
	e, err := p.Next()
	require.NoError(t, err)
	return e
}

// A Last-Event-ID beyond the topic's newest message gets a reset event
// and the stream's real position, not the client's made-up one; "0" (not
// an ID) is garbage: reset, and live from the newest message.
func TestFutureOrGarbageLastEventID(t *testing.T) {
	t.Parallel()
	b, url := testBroker(t, Options{})
	ctx := context.Background()
	var ids []rtkit.ID
	for i := range 2 {
		id, err := b.Publish(ctx, "t", Event{Data: []byte{'a' + byte(i)}})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for _, last := range []string{"99999999999999-0", "0"} {
		p := openStream(t, url+"?topic=t", last)
		require.Equal(t, ids[len(ids)-1].String(), next(t, p).ID, "Last-Event-ID %q", last)
		reset := next(t, p)
		require.Equal(t, ResetEvent, reset.Type)
		require.JSONEq(t, `["t"]`, string(reset.Data))
		id, err := b.Publish(ctx, "t", Event{Data: []byte("live")})
		require.NoError(t, err)
		e := next(t, p)
		require.Equal(t, "live", string(e.Data), "nothing is replayed before it")
		require.Equal(t, id.String(), e.ID)
		ids = append(ids, id)
	}
}

// After a reset, the retained history is replayed by default; with
// on_reset=live the stream starts at the newest message instead.
func TestOnResetLive(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{HistorySize: 3})
	t.Cleanup(func() { _ = bp.Close() })
	b, url := testBroker(t, Options{Backplane: bp})
	ctx := context.Background()
	var ids []rtkit.ID
	for i := range 10 {
		id, err := b.Publish(ctx, "t", Event{Data: []byte{'0' + byte(i)}})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	p := openStream(t, url+"?topic=t", ids[0].String())
	next(t, p)
	require.Equal(t, ResetEvent, next(t, p).Type)
	require.Equal(t, "7", string(next(t, p).Data), "the retained history follows the reset")

	p = openStream(t, url+"?topic=t&"+"on_reset=live", ids[0].String())
	require.Equal(t, ids[9].String(), next(t, p).ID)
	require.Equal(t, ResetEvent, next(t, p).Type)
	_, err := b.Publish(ctx, "t", Event{Data: []byte("new")})
	require.NoError(t, err)
	require.Equal(t, "new", string(next(t, p).Data))
}

// Streams over the per-address or node-wide limit get a retry hint and an
// empty stream, so the client comes back later.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	for _, opts := range []Options{{MaxStreamsPerIP: 1}, {MaxStreams: 1}} {
		b, url := testBroker(t, opts)
		openStream(t, url+"?topic=t", "")
		waitFor(t, func() bool { return b.Stats().Streams == 1 })
		resp, err := http.Get(url + "?topic=t")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Regexp(t, `^retry: \d+\n\n$`, string(body))
	}
}
