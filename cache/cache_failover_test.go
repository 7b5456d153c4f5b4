package cache

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// Two nodes with a local tier over a 3-primary + 3-replica Redis Cluster;
// the primary holding the invalidation topic is killed. After the replica
// takes over, a write on one node still drops the other's local copy.
func TestLocalTierInvalidatedAfterClusterFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
	ctx := context.Background()
	node := func() *Cache {
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: cl.Client(t), Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bp.Close() })
		c := New(Options{Store: NewRedisStore(cl.Client(t), "c:"), Local: &LocalOptions{Backplane: bp}, Logger: slog.New(slog.DiscardHandler)})
		t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
		return c
	}
	a, b := node(), node()
	victim := cl.Primary(t, "rtkit:{rtkit-cache-invalidations}")
	// The entry lives on another primary: this test is about the
	// invalidation topic. (The store's own keys on a failed primary are
	// another matter: see the package docs.)
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("k%d", i); cl.Primary(t, NewRedisStore(nil, "c:").entryKey(k)) != victim {
			key = k
		}
	}
	load := func(context.Context) (string, error) { return "loaded", nil }
	for _, c := range []*Cache{a, b} {
		v, err := GetOrLoad(ctx, c, key, load)
		require.NoError(t, err)
		require.Equal(t, "loaded", v)
	}

	killed := time.Now()
	victim.Kill(t)
	for cl.Primary(t, "rtkit:{rtkit-cache-invalidations}") == victim {
		require.Less(t, time.Since(killed), 30*time.Second, "no failover")
		time.Sleep(20 * time.Millisecond)
	}
	// Write on A until B sees a value written after the failover: B's
	// local copy must be dropped by an invalidation, as its staleness
	// bound (a minute) is far away.
	for i := 0; ; i++ {
		want := fmt.Sprintf("v%d", i)
		err := Set(ctx, a, key, want)
		if testing.Verbose() && i%20 == 0 {
			v, gerr := GetOrLoad(ctx, b, key, load)
			t.Logf("%v: set %v: %v; B reads %v, %v", time.Since(killed).Round(10*time.Millisecond), want, err, v, gerr)
		}
		if err == nil {
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if v, err := GetOrLoad(ctx, b, key, load); err == nil && v == want {
					t.Logf("node B saw node A's write %v after the kill", time.Since(killed).Round(10*time.Millisecond))
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		require.Less(t, time.Since(killed), 30*time.Second, "node B never saw a write of node A after the failover")
	}
}
