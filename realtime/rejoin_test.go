package realtime

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// After a reconnect the Go client retries a rejoin refused for a moment,
// and reports a room it can no longer join instead of keeping it as
// joined.
func TestClientRejoinRefused(t *testing.T) {
	var mu sync.Mutex
	joins := map[string]int{}
	locked := false
	h, url := testHub(t, Options{Authenticate: bearer, Authorize: func(ctx context.Context, id Identity, a Action) error {
		if a.Kind != ActionJoin {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		joins[a.Room]++
		switch {
		case a.Room == "locked" && locked:
			return &Error{Code: CodeForbidden, Message: "locked"}
		case a.Room == "flaky" && joins[a.Room] == 2:
			return &Error{Code: CodeInternal, Message: "try again"}
		}
		return nil
	}})
	ctx := context.Background()
	c, err := Dial(ctx, url, DialOptions{HTTPHeader: as("ada"), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	var evMu sync.Mutex
	var events []Event
	go func() {
		for e := range c.Events() {
			evMu.Lock()
			events = append(events, e)
			evMu.Unlock()
		}
	}()
	find := func(op, room string) []Event {
		evMu.Lock()
		defer evMu.Unlock()
		var out []Event
		for _, e := range events {
			if e.Op == op && (room == "" || e.Room == room) {
				out = append(out, e)
			}
		}
		return out
	}
	_, err = c.Join(ctx, "flaky", JoinOptions{})
	require.NoError(t, err)
	_, err = c.Join(ctx, "locked", JoinOptions{})
	require.NoError(t, err)
	mu.Lock()
	locked = true
	mu.Unlock()
	dropUser(h, "ada")
	waitFor(t, "joinfailed", func() bool { return len(find("joinfailed", "")) == 1 })
	require.Equal(t, "locked", find("joinfailed", "")[0].Room)
	require.ErrorContains(t, find("joinfailed", "")[0].Err, "forbidden")
	waitFor(t, "flaky rejoined", func() bool { mu.Lock(); defer mu.Unlock(); return joins["flaky"] == 3 })
	_, err = h.Publish(ctx, "flaky", "back")
	require.NoError(t, err)
	waitFor(t, "a message of the rejoined room", func() bool { return len(find("msg", "flaky")) == 1 })
	require.Empty(t, find("gap", ""), "a retried rejoin is no gap")
}

// Connections dropped right after their welcome do not reset the Go
// client's backoff: each counts as a failed attempt.
func TestClientBackoffStartsOverOnlyAfterAStableConnection(t *testing.T) {
	h, url := testHub(t, Options{Authenticate: bearer})
	ctx := context.Background()
	c, err := Dial(ctx, url, DialOptions{HTTPHeader: as("flap"), MinBackoff: 5 * time.Millisecond, MaxBackoff: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	connected := make(chan struct{}, 8)
	go func() {
		for e := range c.Events() {
			if e.Op == "connected" {
				connected <- struct{}{}
			}
		}
	}()
	for range 3 {
		dropUser(h, "flap")
		<-connected
	}
	c.mu.Lock()
	next := c.backoff
	c.mu.Unlock()
	require.GreaterOrEqual(t, next, 40*time.Millisecond, "three short-lived connections: 5 ms doubled three times")
}
