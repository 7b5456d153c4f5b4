package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/sse"
	"github.com/stretchr/testify/require"
)

// TestLeaderboard: a round ends; its scores are stored, read through the
// cache, and pushed to leaderboard pages over SSE — in memory and over
// Redis.
func TestLeaderboard(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			cfg := testConfig()
			cfg.Snake.Duration = 60 // two-second rounds
			if backend == "redis" {
				db := redistest.New(t)
				cfg.RedisURL, cfg.Prefix = os.Getenv("REDIS_URL"), db.Prefix
				if cfg.RedisURL == "" {
					cfg.RedisURL = "redis://" + db.Opts.Addr
				}
			}
			a, base := startApp(t, cfg)
			var empty boardView
			getJSON(t, base+"/api/leaderboard", &empty)
			require.Empty(t, empty.Top)

			// A page follows the leaderboard over SSE.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			boards := make(chan boardView, 4)
			done := make(chan error, 1)
			go func() {
				done <- sse.Subscribe(ctx, base+"/events", sse.ClientOptions{Logger: slog.New(slog.DiscardHandler)}, func(e sse.Event) error {
					var v boardView
					if e.Type == "board" && json.Unmarshal(e.Data, &v) == nil {
						boards <- v
					}
					return nil
				})
			}()
			time.Sleep(200 * time.Millisecond) // the stream is open before the round ends

			join(t, base, tokA, "ada")
			join(t, base, tokB, "bob")
			var v boardView
			select {
			case v = <-boards:
			case <-time.After(15 * time.Second):
				t.Fatal("no leaderboard event after a round")
			}
			require.Len(t, v.Recent, 1)
			require.Equal(t, "m1", v.Recent[0].Match)
			require.Len(t, v.Recent[0].Players, 2)
			require.Len(t, v.Top, 2)

			// The page's first load reads the same through the cache: one
			// load, then hits.
			loads := a.cache.Stats().Loads
			var got boardView
			getJSON(t, base+"/api/leaderboard", &got)
			getJSON(t, base+"/api/leaderboard", &got)
			require.Equal(t, v, got)
			require.Equal(t, loads, a.cache.Stats().Loads, "served from the cache filled when the result was pushed")
			cancel()
			require.True(t, errors.Is(<-done, context.Canceled))
		})
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}
