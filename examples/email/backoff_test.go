package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// In a synctest bubble the clock moves only when every goroutine waits,
// so the retry delays can be measured exactly: with the log-only mailer, a
// "flaky" address fails twice, and the waits before attempts 2 and 3 are
// MAIL_BACKOFF and twice that, each within the ±20% jitter.
func TestBackoffDoubles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := loadConfig(env("MAIL_BACKOFF", "10s", "MAIL_ATTEMPTS", "4"))
		require.NoError(t, err)
		a, err := newApp(cfg, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer a.close()
		var mu sync.Mutex
		var events []tasks.Event
		sub, err := a.runner.Subscribe(t.Context(), func(e tasks.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})
		require.NoError(t, err)
		defer sub.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.runner.Run(ctx) }()

		task, err := a.enqueueWelcome(ctx, signup{Email: "flaky@example.com"}) // as POST /signup does
		require.NoError(t, err)
		time.Sleep(time.Minute) // three attempts of 0.5s and two waits of at most 12s and 24s
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)

		got, err := a.runner.Get(t.Context(), task.ID)
		require.NoError(t, err)
		assert.Equal(t, tasks.Succeeded, got.State)
		assert.Equal(t, 3, got.Attempt)
		mu.Lock()
		defer mu.Unlock()
		var waits []time.Duration
		var retryAt time.Time
		for _, e := range events {
			switch {
			case e.TaskID != task.ID:
			case e.Kind == tasks.EventRetrying:
				retryAt = e.RunAt
				waits = append(waits, e.RunAt.Sub(e.Time))
			case e.Kind == tasks.EventStarted && !retryAt.IsZero():
				assert.False(t, e.Time.Before(retryAt), "attempt %d started early", e.Attempt)
			}
		}
		require.Len(t, waits, 2)
		for i, w := range waits {
			base := cfg.Backoff << i // 10s, then 20s
			assert.True(t, w >= base*8/10 && w <= base*12/10, "wait %d is %v, want %v ±20%%", i+1, w, base)
		}
	})
}
