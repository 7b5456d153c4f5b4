package rtkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// The Sentinel group's primary is killed while three nodes on
// redis.NewFailoverClient publish: after the sentinels promote the replica,
// publishes resume, every member resubscribes on the new primary and
// resumes from the stream.
func TestRedisBackplaneSentinelFailover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinel(t)
	topics := []string{"room-0", "room-1", "room-2"}
	w := startFailoverWorld(t, topics, func() redis.UniversalClient { return g.Client(t) })

	victim := g.Primary(t)
	killed := time.Now()
	victim.Kill(t)
	for g.Primary(t) == victim {
		require.Less(t, time.Since(killed), 30*time.Second, "no failover")
		time.Sleep(20 * time.Millisecond)
	}
	promoted := time.Since(killed)
	w.waitLive(t, time.Now())
	w.joinLate(t, topics[0], 5)
	admin := g.Client(t)
	total, acked := w.finish(t, func(topic string) []redis.XMessage {
		entries, err := admin.XRange(context.Background(), "rtkit:{"+topic+"}", "-", "+").Result()
		require.NoError(t, err)
		return entries
	})
	var outage, resume time.Duration
	for _, tp := range topics {
		for _, f := range w.flows[tp] {
			outage = max(outage, f.outage(killed))
		}
		for n := range failoverNodes {
			at := w.recs[n][tp].firstAfter(killed)
			require.False(t, at.IsZero(), fmt.Sprintf("node %d, %s", n, tp))
			resume = max(resume, at.Sub(killed))
		}
	}
	t.Logf("sentinel down-after 1s: replica promoted after %v; publishes resumed after %v; every member had a message published after the kill %v after it",
		promoted.Round(10*time.Millisecond), outage.Round(10*time.Millisecond), resume.Round(10*time.Millisecond))
	t.Logf("member deliveries of acknowledged messages: %d expected, %d delivered, %d missed with a gap reported (%d gap reports), %d lost by Redis before replication",
		acked, total.delivered, total.gapped, total.gaps, total.lostByRedis)
	require.Less(t, outage, 15*time.Second, "publishes resume soon after the failover")
}
