package rtkit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// staleSlots is a Cluster client's slot map source that can be frozen:
// while frozen it answers with the map it had, as a go-redis client does
// between a topology change and its next reload.
type staleSlots struct {
	admin  *redis.ClusterClient
	frozen atomic.Pointer[[]redis.ClusterSlot]
}

func (s *staleSlots) slots(ctx context.Context) ([]redis.ClusterSlot, error) {
	if f := s.frozen.Load(); f != nil {
		return *f, nil
	}
	//lint:ignore SA1019 ClusterOptions.ClusterSlots takes the CLUSTER SLOTS shape
	return s.admin.ClusterSlots(ctx).Result()
}

// freeze makes the map stay what it is now until thaw.
func (s *staleSlots) freeze(t *testing.T) {
	t.Helper()
	//lint:ignore SA1019 ClusterOptions.ClusterSlots takes the CLUSTER SLOTS shape
	m, err := s.admin.ClusterSlots(context.Background()).Result()
	require.NoError(t, err)
	s.frozen.Store(&m)
}

func (s *staleSlots) thaw() { s.frozen.Store(nil) }

func (s *staleSlots) client(t *testing.T) redis.UniversalClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{ClusterSlots: s.slots})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shardSubscribers returns how many clients of s subscribe to channel.
func shardSubscribers(t *testing.T, s *redistest.Server, channel string) int64 {
	t.Helper()
	n, err := s.Client(t).PubSubShardNumSub(context.Background(), channel).Result()
	require.NoError(t, err)
	return n[channel]
}

// waitSubscribers waits until every backplane subscribes to channel on
// the new primary and none on the old one.
func waitSubscribers(t *testing.T, channel string, old, primary *redistest.Server, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		onOld, onNew := shardSubscribers(t, old, channel), shardSubscribers(t, primary, channel)
		if onOld == 0 && onNew == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d subscribers on the demoted node, %d on the new primary; want 0 and %d", channel, onOld, onNew, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A manual failover demotes the busy slot's primary while every node's
// slot map still names it. The node drops the slot's subscriptions at
// once; the backplanes must not believe their map and subscribe there
// again (a demoted primary may never pass them a message: the silent
// stall this test was written for), but find the new primary.
//
// With stale for longer than staleMapWait, the backplanes give up waiting
// and subscribe on the demoted node again; the watchdog (watchSlots)
// moves them once the map is right.
func TestRedisBackplaneClusterStaleSlotMap(t *testing.T) {
	t.Parallel()
	for _, stale := range []time.Duration{staleMapWait / 2, staleMapWait + 2*slotCheckInterval} {
		t.Run(fmt.Sprintf("stale %v", stale), func(t *testing.T) {
			t.Parallel()
			cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
			src := &staleSlots{admin: cl.Client(t)}
			topics := []string{"room-0", "room-1", "room-2"}
			w := startFailoverWorld(t, topics, func() redis.UniversalClient { return src.client(t) })
			old := cl.Primary(t, "rtkit:{room-0}")
			src.freeze(t)
			primary := cl.Failover(t, old)
			time.AfterFunc(stale, src.thaw)
			waitSubscribers(t, w.bps[0].channel("room-0"), old, primary, failoverNodes)
			w.waitLive(t, time.Now())
			admin := cl.Client(t)
			total, acked := w.finish(t, func(topic string) []redis.XMessage {
				entries, err := admin.XRange(context.Background(), "rtkit:{"+topic+"}", "-", "+").Result()
				require.NoError(t, err)
				return entries
			})
			t.Logf("%d expected, %d delivered, %d gap-reported, %d lost by Redis", acked, total.delivered, total.gapped, total.lostByRedis)
			require.Zero(t, total.gapped+total.lostByRedis, "a manual failover loses nothing")
		})
	}
}
