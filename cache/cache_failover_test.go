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
	a, b := clusterNode(t, cl), clusterNode(t, cl)
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

// Two nodes with a local tier over a Cluster with replicas; the primary
// of the invalidation topic is killed while node A writes one key after
// another, each cached on node B before. An invalidation published while
// B's subscription moves to the new primary must still reach B (it comes
// from the stream): once the failover is over, B serves every key as A
// last wrote it, long before its staleness bound (a minute).
func TestLocalTierKeepsInvalidationsAcrossClusterFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
	ctx := context.Background()
	a, b := clusterNode(t, cl), clusterNode(t, cl)
	victim := cl.Primary(t, "rtkit:{rtkit-cache-invalidations}")
	// The keys live on other primaries: this test is about invalidations.
	var keys []string
	for i := 0; len(keys) < 400; i++ {
		if k := fmt.Sprintf("k%d", i); cl.Primary(t, NewRedisStore(nil, "c:").entryKey(k)) != victim {
			keys = append(keys, k)
		}
	}
	load := func(context.Context) (string, error) { return "loaded", nil }
	for _, k := range keys {
		for _, c := range []*Cache{a, b} {
			v, err := GetOrLoad(ctx, c, k, load)
			require.NoError(t, err)
			require.Equal(t, "loaded", v)
		}
	}

	killed := time.Now()
	victim.Kill(t)
	// One key after another until a second after the promotion: each Set
	// publishes its invalidation, waiting out the failover.
	var promoted time.Time
	var written []string
	for _, k := range keys {
		if promoted.IsZero() && cl.Primary(t, "rtkit:{rtkit-cache-invalidations}") != victim {
			promoted = time.Now()
		}
		if !promoted.IsZero() && time.Since(promoted) > time.Second {
			break
		}
		require.NoError(t, Set(ctx, a, k, "new"))
		written = append(written, k)
		time.Sleep(20 * time.Millisecond)
	}
	require.False(t, promoted.IsZero(), "no failover while %d keys were written", len(written))
	deadline := time.Now().Add(15 * time.Second)
	stale := 0
	for _, k := range written {
		for {
			v, err := GetOrLoad(ctx, b, k, load)
			require.NoError(t, err)
			if v == "new" {
				break
			}
			if time.Now().After(deadline) {
				stale++
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("replica promoted %v after the kill; %d keys written from the kill to a second after; node B serves %d of them stale",
		promoted.Sub(killed).Round(10*time.Millisecond), len(written), stale)
	require.Zero(t, stale, "node B serves keys whose invalidation it missed")
}

// clusterNode is one node of the failover tests: a cache with a local tier
// whose invalidations ride a Redis backplane on cl.
func clusterNode(t *testing.T, cl *redistest.Cluster) *Cache {
	bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: cl.Client(t), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bp.Close() })
	c := New(Options{Store: NewRedisStore(cl.Client(t), "c:"), Local: &LocalOptions{Backplane: bp}, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return c
}
