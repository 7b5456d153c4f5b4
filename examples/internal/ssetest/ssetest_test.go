package ssetest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/sse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Subscribe returns once the broker has subscribed the stream: an event
// published right after it arrives.
func TestSubscribeReturnsOnceSubscribed(t *testing.T) {
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	t.Cleanup(func() { _ = bp.Close() })
	b := sse.NewBroker(sse.Options{Backplane: bp, Logger: slog.New(slog.DiscardHandler),
		Topics: func(*http.Request) ([]string, error) { return []string{"news"}, nil }})
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		_ = b.Shutdown(context.Background())
		srv.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})

	got := make(chan sse.Event, 1)
	Subscribe(t, srv.URL, func(e sse.Event) error {
		got <- e
		return nil
	})
	assert.Equal(t, 1, b.Stats().Streams, "subscribed when Subscribe returns")
	_, err := b.Publish(context.Background(), "news", sse.Event{Type: "headline", Data: []byte(`"hello"`)})
	require.NoError(t, err)
	select {
	case e := <-got:
		assert.Equal(t, "headline", e.Type)
		assert.JSONEq(t, `"hello"`, string(e.Data))
	case <-time.After(10 * time.Second):
		t.Fatal("the event published after Subscribe returned never arrived")
	}
}
