package rtkit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// failoverWorld is three backplane nodes with a member on each topic on
// each node, and a publisher on each topic on each node.
type failoverWorld struct {
	topics []string
	bps    []*RedisBackplane
	recs   []map[string]*timedRecorder
	flows  map[string][]*ackFlow
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

const failoverNodes = 3

func startFailoverWorld(t *testing.T, topics []string, newClient func() redis.UniversalClient) *failoverWorld {
	t.Helper()
	ctx := context.Background()
	w := &failoverWorld{topics: topics, flows: map[string][]*ackFlow{}}
	for n := range failoverNodes {
		var log *slog.Logger
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", n)
		}
		b := openRedis(t, RedisOptions{Client: newClient(), HistorySize: 100000, Logger: log})
		w.bps = append(w.bps, b)
		w.recs = append(w.recs, map[string]*timedRecorder{})
		for _, tp := range topics {
			r := newTimedRecorder()
			s, err := b.Subscribe(ctx, tp, SubscribeOptions{}, r)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			w.recs[n][tp] = r
		}
	}
	fctx, stop := context.WithCancel(ctx)
	w.stop = stop
	t.Cleanup(stop)
	for n := range failoverNodes {
		for _, tp := range topics {
			f := &ackFlow{topic: tp}
			w.flows[tp] = append(w.flows[tp], f)
			w.wg.Add(1)
			go f.run(fctx, w.bps[n], 20*time.Millisecond, &w.wg)
		}
	}
	for n := range failoverNodes {
		for _, tp := range topics {
			w.recs[n][tp].waitN(t, 10)
		}
	}
	return w
}

// waitLive waits until every member has a message published after t.
func (w *failoverWorld) waitLive(tb *testing.T, after time.Time) {
	tb.Helper()
	for n := range failoverNodes {
		for _, tp := range w.topics {
			w.recs[n][tp].wait(tb, fmt.Sprintf("node %d, %s: a message published after the failover", n, tp), func(msgs []*Message) bool {
				return len(msgs) > 0 && int64(msgs[len(msgs)-1].ID.MS) > after.UnixMilli()
			})
		}
	}
}

// joinLate subscribes a new member to topic on every node and waits until
// each has received n messages.
func (w *failoverWorld) joinLate(t *testing.T, topic string, n int) {
	t.Helper()
	for i := range failoverNodes {
		r := newTimedRecorder()
		s, err := w.bps[i].Subscribe(context.Background(), topic, SubscribeOptions{}, r)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		r.waitN(t, n)
	}
}

// finish stops the publishers, waits for every member to catch up and
// checks every member's deliveries; it returns the totals.
func (w *failoverWorld) finish(t *testing.T, stream func(topic string) []redis.XMessage) (total deliveryReport, acked int) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	for _, tp := range w.topics {
		var all []ID
		for _, f := range w.flows[tp] {
			all = append(all, f.ids()...)
		}
		last := ID{}
		for _, id := range all {
			if id.Compare(last) > 0 {
				last = id
			}
		}
		stored := map[ID]bool{}
		for _, e := range stream(tp) {
			id, err := ParseID(e.ID)
			require.NoError(t, err)
			stored[id] = true
		}
		for n := range failoverNodes {
			rec := w.recs[n][tp]
			rec.wait(t, fmt.Sprintf("node %d, %s: the last acknowledged message", n, tp), func(msgs []*Message) bool {
				return len(msgs) > 0 && msgs[len(msgs)-1].ID.Compare(last) >= 0
			})
			rep := checkMember(t, fmt.Sprintf("node %d, %s", n, tp), rec.recorder, all, stored)
			total.delivered += rep.delivered
			total.gapped += rep.gapped
			total.lostByRedis += rep.lostByRedis
			total.gaps += rep.gaps
			acked += len(all)
		}
	}
	return total, acked
}

// A primary of a 3-primary + 3-replica Cluster is killed while three nodes
// publish to topics on every shard: publishes resume after the replica
// takes over, every member on every node keeps receiving, and every
// acknowledged message still in Redis is delivered exactly once or
// reported as a gap.
func TestRedisBackplaneClusterFailover(t *testing.T) {
	t.Parallel()
	const nodeTimeout = 2 * time.Second
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: nodeTimeout})
	// Two topics on each primary; the first one's primary fails.
	var topics []string
	per := map[*redistest.Server]int{}
	for i := 0; len(topics) < 6; i++ {
		name := fmt.Sprintf("room-%d", i)
		if p := cl.Primary(t, "rtkit:{"+name+"}"); per[p] < 2 {
			per[p]++
			topics = append(topics, name)
		}
	}
	busy := topics[0]
	victim := cl.Primary(t, "rtkit:{"+busy+"}")
	w := startFailoverWorld(t, topics, func() redis.UniversalClient { return cl.Client(t) })

	killed := time.Now()
	victim.Kill(t)
	for cl.Primary(t, "rtkit:{"+busy+"}") == victim {
		require.Less(t, time.Since(killed), 30*time.Second, "no replica took over")
		time.Sleep(20 * time.Millisecond)
	}
	promoted := time.Since(killed)
	w.waitLive(t, time.Now())
	w.joinLate(t, busy, 5)
	admin := cl.Client(t)
	total, acked := w.finish(t, func(topic string) []redis.XMessage {
		entries, err := admin.XRange(context.Background(), "rtkit:{"+topic+"}", "-", "+").Result()
		require.NoError(t, err)
		return entries
	})

	var outage time.Duration
	for _, f := range w.flows[busy] {
		outage = max(outage, f.outage(killed))
	}
	var resume time.Duration
	for n := range failoverNodes {
		at := w.recs[n][busy].firstAfter(killed)
		require.False(t, at.IsZero())
		resume = max(resume, at.Sub(killed))
	}
	t.Logf("cluster-node-timeout %v: replica promoted after %v; publishes to the failed slot resumed after %v; every member had a message published after the kill %v after it",
		nodeTimeout, promoted.Round(10*time.Millisecond), outage.Round(10*time.Millisecond), resume.Round(10*time.Millisecond))
	t.Logf("member deliveries of acknowledged messages: %d expected, %d delivered, %d missed with a gap reported (%d gap reports), %d lost by Redis before replication",
		acked, total.delivered, total.gapped, total.gaps, total.lostByRedis)
	require.Less(t, outage, nodeTimeout+8*time.Second, "publishes resume soon after the replica takes over")
}

// The slot of a subscribed, busy topic migrates to another primary while
// three nodes publish: every member follows it, with nothing lost.
func TestRedisBackplaneClusterReshard(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{})
	var topics []string
	per := map[*redistest.Server]int{}
	for i := 0; len(topics) < 3; i++ {
		name := fmt.Sprintf("room-%d", i)
		if p := cl.Primary(t, "rtkit:{"+name+"}"); per[p] < 1 {
			per[p]++
			topics = append(topics, name)
		}
	}
	busy := topics[0]
	to := cl.Primary(t, "rtkit:{"+topics[1]+"}")
	w := startFailoverWorld(t, topics, func() redis.UniversalClient { return cl.Client(t) })

	moved := time.Now()
	cl.MigrateSlot(t, "rtkit:{"+busy+"}", to)
	require.Equal(t, to, cl.Primary(t, "rtkit:{"+busy+"}"))
	took := time.Since(moved)
	w.waitLive(t, time.Now())
	w.joinLate(t, busy, 5)
	admin := cl.Client(t)
	total, acked := w.finish(t, func(topic string) []redis.XMessage {
		entries, err := admin.XRange(context.Background(), "rtkit:{"+topic+"}", "-", "+").Result()
		require.NoError(t, err)
		return entries
	})
	var outage time.Duration
	for _, f := range w.flows[busy] {
		outage = max(outage, f.outage(moved))
	}
	t.Logf("slot migrated in %v; longest wait for a publish acknowledgement across it %v", took.Round(time.Millisecond), outage.Round(time.Millisecond))
	t.Logf("member deliveries of acknowledged messages: %d expected, %d delivered, %d missed with a gap reported (%d gap reports), %d lost by Redis",
		acked, total.delivered, total.gapped, total.gaps, total.lostByRedis)
	require.Zero(t, total.gapped+total.lostByRedis, "a migration loses nothing")
}

// A manual failover (CLUSTER FAILOVER on the replica) demotes the busy
// slot's primary while it stays up: members follow the slot to the new
// primary instead of listening to a replica in silence.
func TestRedisBackplaneClusterManualFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
	topics := []string{"room-0", "room-1", "room-2"}
	w := startFailoverWorld(t, topics, func() redis.UniversalClient { return cl.Client(t) })
	old := cl.Primary(t, "rtkit:{room-0}")
	start := time.Now()
	cl.Failover(t, old)
	w.waitLive(t, time.Now())
	admin := cl.Client(t)
	total, acked := w.finish(t, func(topic string) []redis.XMessage {
		entries, err := admin.XRange(context.Background(), "rtkit:{"+topic+"}", "-", "+").Result()
		require.NoError(t, err)
		return entries
	})
	t.Logf("manual failover; members live again %v after it began; %d expected, %d delivered, %d gap-reported (%d gap reports), %d lost by Redis",
		time.Since(start).Round(10*time.Millisecond), acked, total.delivered, total.gapped, total.gaps, total.lostByRedis)
	require.Zero(t, total.gapped+total.lostByRedis, "a manual failover loses nothing")
}
