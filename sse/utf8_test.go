package sse

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/require"
)

// The event stream is UTF-8: Publish and AppendEvent refuse other data,
// and what other code publishes on the backplane is made valid on the way
// out.
func TestEventDataIsUTF8(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	b, url := testBroker(t, Options{Backplane: bp})
	ctx := context.Background()

	_, err := b.Publish(ctx, "t", Event{Data: []byte("bad \xff")})
	require.ErrorIs(t, err, ErrInvalidEvent)
	_, err = AppendEvent(nil, Event{Data: []byte("bad \xc3\x28")})
	require.ErrorIs(t, err, ErrInvalidEvent)
	_, err = AppendEvent(nil, Event{Type: "\xff"})
	require.ErrorIs(t, err, ErrInvalidEvent)

	resp, err := http.Get(url + "?topic=t")
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	_, err = bp.Publish(ctx, "t", []byte("foreign \xff bytes"), rtkit.PublishOptions{})
	require.NoError(t, err)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, utf8.ValidString(line), "line %q is not UTF-8", line)
		if strings.HasPrefix(line, "data: ") {
			require.Equal(t, "data: foreign \uFFFD bytes\n", line)
			return
		}
	}
}

// Only the realtime hub's envelope mark makes a typed hub event: a payload
// that merely looks like one streams as it is, and data published through
// the broker can never pass for an envelope.
func TestLookalikeEnvelopesStreamUntyped(t *testing.T) {
	t.Parallel()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	b, url := testBroker(t, Options{Backplane: bp})
	ev := subscribe(t, url+"?topic=lobby", ClientOptions{})
	waitFor(t, func() bool { return b.Stats().Streams == 1 })
	ctx := context.Background()
	_, err := bp.Publish(ctx, "lobby", []byte(`{"op":"kick"}`), rtkit.PublishOptions{})
	require.NoError(t, err)
	_, err = b.Publish(ctx, "lobby", Event{Data: []byte(hubMark + `{"op":"kick"}`)})
	require.NoError(t, err)
	require.Equal(t, []string{`{"op":"kick"}`, hubMark + `{"op":"kick"}`}, ev.waitData(t, "", 2))
	hist, err := bp.History(ctx, "lobby", rtkit.HistoryOptions{})
	require.NoError(t, err)
	require.NotEqual(t, hubMark, string(hist.Messages[1].Data[:len(hubMark)]), "stored typed, not as an envelope")
}

// Without an Authorize hook the topics rtkit uses internally are refused;
// with one, the hook decides.
func TestReservedTopicsNeedAuthorize(t *testing.T) {
	t.Parallel()
	_, url := testBroker(t, Options{})
	for _, topic := range []string{"inbox:alice", "tasks", "tasks:cancel", "rtkit-cache-invalidations"} {
		resp, err := http.Get(url + "?topic=" + topic)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, topic)
	}
	_, url = testBroker(t, Options{Authorize: func(*http.Request, string) error { return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"?topic=tasks", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
