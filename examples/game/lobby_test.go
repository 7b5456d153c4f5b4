package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// TestLobby runs the same checks on both lobbies: matchmaking fills a
// match before opening the next, a seat is kept, a freed slot is reused,
// only an empty match closes, and a lease has one holder at a time.
func TestLobby(t *testing.T) {
	lobbies := map[string]func(t *testing.T) lobby{
		"memory": func(*testing.T) lobby { return newMemoryLobby() },
		"redis": func(t *testing.T) lobby {
			db := redistest.New(t)
			opts := *db.Opts
			if u := os.Getenv("REDIS_URL"); u != "" {
				o, err := redis.ParseURL(u)
				require.NoError(t, err)
				opts = *o
			}
			rdb := redis.NewClient(&opts)
			t.Cleanup(func() { _ = rdb.Close() })
			return &redisLobby{rdb: rdb, prefix: db.Prefix + "lobby:"}
		},
	}
	for name, mk := range lobbies {
		t.Run(name, func(t *testing.T) {
			l := mk(t)
			ctx := context.Background()
			for i := range 9 {
				s, err := l.Join(ctx, fmt.Sprint("user", i), fmt.Sprint("name", i))
				require.NoError(t, err)
				if i < 8 {
					require.Equal(t, seat{"m1", i}, s)
				} else {
					require.Equal(t, seat{"m2", 0}, s, "a full match opens another")
				}
			}
			s, err := l.Join(ctx, "user3", "again")
			require.NoError(t, err)
			require.Equal(t, seat{"m1", 3}, s, "a seated user keeps the seat")
			ps, err := l.Players(ctx, "m1")
			require.NoError(t, err)
			require.Len(t, ps, 8)
			require.Equal(t, player{User: "user3", Name: "name3"}, ps[3])

			require.NoError(t, l.Leave(ctx, "m1", "user3"))
			require.NoError(t, l.Leave(ctx, "m2", "user4"), "not in m2: nothing")
			_, ok, err := l.Seat(ctx, "user3")
			require.NoError(t, err)
			require.False(t, ok)
			s, err = l.Join(ctx, "newcomer", "n")
			require.NoError(t, err)
			require.Equal(t, seat{"m1", 3}, s, "the freed slot of the fullest match")
			ms, err := l.Matches(ctx)
			require.NoError(t, err)
			require.Equal(t, map[string]int{"m1": 8, "m2": 1}, ms)

			closed, err := l.Close(ctx, "m2")
			require.NoError(t, err)
			require.False(t, closed, "m2 has a player")
			require.NoError(t, l.Leave(ctx, "m2", "user8"))
			closed, err = l.Close(ctx, "m2")
			require.NoError(t, err)
			require.True(t, closed)
			ms, err = l.Matches(ctx)
			require.NoError(t, err)
			require.Equal(t, map[string]int{"m1": 8}, ms)

			ok, err = l.Acquire(ctx, "m1", "a", 200*time.Millisecond)
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = l.Acquire(ctx, "m1", "b", time.Minute)
			require.NoError(t, err)
			require.False(t, ok, "held by a")
			ok, err = l.Acquire(ctx, "m1", "a", 200*time.Millisecond)
			require.NoError(t, err)
			require.True(t, ok, "renewed by its holder")
			require.NoError(t, l.Release(ctx, "m1", "b"), "not b's: nothing")
			ok, _ = l.Acquire(ctx, "m1", "b", time.Minute)
			require.False(t, ok)
			require.Eventually(t, func() bool {
				ok, err := l.Acquire(ctx, "m1", "b", time.Minute)
				return err == nil && ok
			}, 5*time.Second, 20*time.Millisecond, "an expired lease goes to another node")
			require.NoError(t, l.Release(ctx, "m1", "b"))
			ok, err = l.Acquire(ctx, "m1", "a", time.Minute)
			require.NoError(t, err)
			require.True(t, ok, "released")
		})
	}
}
