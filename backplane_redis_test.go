package rtkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redisHarness opens Redis backplanes that share prefix, each with its own
// client from newClient.
func redisHarness(prefix string, newClient func(t *testing.T) redis.UniversalClient) harness {
	return harness{
		name: "redis",
		run:  func(t *testing.T, f func(t *testing.T)) { f(t) },
		open: func(t *testing.T, o MemoryOptions) Backplane {
			return openRedis(t, RedisOptions{
				Client: newClient(t), Prefix: prefix,
				HistorySize: o.HistorySize, HistoryTTL: o.HistoryTTL,
				TopicHistory: o.TopicHistory, MaxMessageSize: o.MaxMessageSize,
			})
		},
		subscribedTopics: func(t *testing.T, b Backplane) int {
			return serverChannels(t, b.(*RedisBackplane))
		},
	}
}

func openRedis(t *testing.T, o RedisOptions) *RedisBackplane {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := NewRedisBackplane(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// serverChannels counts the channels under b's prefix that Redis sees
// subscribed, whoever subscribed them.
func serverChannels(t *testing.T, b *RedisBackplane) int {
	t.Helper()
	ctx := context.Background()
	pattern := b.prefix + "*"
	if b.cluster != nil {
		var mu sync.Mutex
		n := 0
		err := b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			chans, err := c.PubSubShardChannels(ctx, pattern).Result()
			mu.Lock()
			n += len(chans)
			mu.Unlock()
			return err
		})
		require.NoError(t, err)
		return n
	}
	chans, err := b.client.PubSubChannels(ctx, pattern).Result()
	require.NoError(t, err)
	return len(chans)
}

func TestRedisBackplaneConformance(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	runConformance(t, redisHarness(db.Prefix, func(t *testing.T) redis.UniversalClient { return db.Client(t) }))
}

func TestRedisBackplaneClusterConformance(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	runConformance(t, redisHarness("rtkit-test:", func(t *testing.T) redis.UniversalClient { return cl.Client(t) }))

	t.Run("TopicKeysShareASlot", func(t *testing.T) {
		b := openRedis(t, RedisOptions{Client: cl.Client(t)})
		key := b.key("room:42")
		assert.Equal(t, "rtkit:{room:42}", key)
		ctx := context.Background()
		_, err := b.Publish(ctx, "room:42", []byte("x"), PublishOptions{})
		require.NoError(t, err)
		slot, err := b.cluster.ClusterKeySlot(ctx, key).Result()
		require.NoError(t, err)
		tagSlot, err := b.cluster.ClusterKeySlot(ctx, "room:42").Result()
		require.NoError(t, err)
		assert.Equal(t, tagSlot, slot, "a topic's keys hash on the topic alone")
	})
}

func TestRedisBackplaneTwoNodes(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	a := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix})
	b := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix})

	recB, recA := newRecorder(), newRecorder()
	subB, err := b.Subscribe(ctx, "room", SubscribeOptions{}, recB)
	require.NoError(t, err)
	defer subB.Close()
	subA, err := a.Subscribe(ctx, "room", SubscribeOptions{}, recA)
	require.NoError(t, err)
	defer subA.Close()

	var want []ID
	for i := range 50 {
		node := a
		if i%2 == 1 {
			node = b
		}
		id, err := node.Publish(ctx, "room", fmt.Appendf(nil, "%d", i), PublishOptions{})
		require.NoError(t, err)
		want = append(want, id)
	}
	assert.Equal(t, want, ids(recB.waitN(t, 50)), "B gets what A and B publish, in order")
	assert.Equal(t, want, ids(recA.waitN(t, 50)))

	// B recovers from the history A wrote.
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "room", SubscribeOptions{Since: want[39]}, rec)
	require.NoError(t, err)
	defer sub.Close()
	assert.True(t, sub.Recovered())
	assert.Equal(t, want[40:], ids(rec.waitN(t, 10)))
}

func TestRedisBackplaneOneSubscriptionPerTopic(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	b := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix})
	var subs []*Subscription
	for range 50 {
		s, err := b.Subscribe(ctx, "busy", SubscribeOptions{}, newRecorder())
		require.NoError(t, err)
		subs = append(subs, s)
	}
	n, err := b.client.PubSubNumSub(ctx, b.channel("busy")).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n[b.channel("busy")], "50 local subscribers, one Redis subscription")
	for _, s := range subs {
		s.Close()
	}
	require.Eventually(t, func() bool {
		n, err := b.client.PubSubNumSub(ctx, b.channel("busy")).Result()
		return err == nil && n[b.channel("busy")] == 0
	}, 5*time.Second, 20*time.Millisecond, "released when the last one leaves")

	// Quick unsubscribe/resubscribe cycles never lose the subscription.
	for i := range 20 {
		s, err := b.Subscribe(ctx, "flappy", SubscribeOptions{}, newRecorder())
		require.NoError(t, err)
		if i < 19 {
			s.Close()
		} else {
			defer s.Close()
		}
	}
	rec := newRecorder()
	s, err := b.Subscribe(ctx, "flappy", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer s.Close()
	_, err = b.Publish(ctx, "flappy", []byte("x"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 1)
}

// flow publishes to a topic from one node and records, for the fault
// tests, which publishes Redis acknowledged.
type flow struct {
	mu    sync.Mutex
	acked []ID
	fails int
}

func (f *flow) run(ctx context.Context, b Backplane, topic string, done chan<- struct{}) {
	defer close(done)
	for i := 0; ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id, err := b.Publish(pctx, topic, fmt.Appendf(nil, "%d", i), PublishOptions{})
		cancel()
		f.mu.Lock()
		if err == nil {
			f.acked = append(f.acked, id)
		} else {
			f.fails++
		}
		f.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(time.Millisecond)
		}
	}
}

func (f *flow) snapshot() ([]ID, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ID(nil), f.acked...), f.fails
}

// checkDelivered asserts that the received messages are strictly
// increasing and that every acknowledged publish was received, except
// those a reported gap accounts for.
func checkDelivered(t *testing.T, rec *recorder, acked []ID) (missing int) {
	t.Helper()
	msgs := rec.messages()
	got := make(map[ID]bool, len(msgs))
	for i, m := range msgs {
		if i > 0 {
			require.Equal(t, 1, m.ID.Compare(msgs[i-1].ID), "duplicate or reordered delivery at %d", i)
		}
		got[m.ID] = true
	}
	rec.mu.Lock()
	gaps := append([]ID(nil), rec.gaps...)
	rec.mu.Unlock()
	for _, id := range acked {
		if got[id] {
			continue
		}
		missing++
		explained := false
		for _, g := range gaps {
			if g.Compare(id) < 0 {
				explained = true
			}
		}
		require.True(t, explained, "acknowledged message %v was lost without a gap report", id)
	}
	return missing
}

func TestRedisBackplaneConnectionKilled(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	pub := openRedis(t, RedisOptions{Client: srv.Client(t)})
	b := openRedis(t, RedisOptions{Client: srv.Client(t)})
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()

	var f flow
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go f.run(fctx, pub, "t", done)
	admin := srv.Client(t)
	for range 3 {
		rec.waitN(t, len(rec.messages())+20)
		// Drop the subscriber's connection: messages published until it
		// resubscribes are read back from the stream.
		require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	}
	rec.waitN(t, len(rec.messages())+20)
	stop()
	<-done
	acked, _ := f.snapshot()
	rec.wait(t, "every acknowledged message", func(msgs []*Message) bool {
		return len(msgs) > 0 && msgs[len(msgs)-1].ID.Compare(acked[len(acked)-1]) >= 0
	})
	assert.Zero(t, checkDelivered(t, rec, acked), "nothing is lost when only the connection drops")
	assert.Zero(t, rec.gapCount())
	// The last publish, cancelled by stop, may have gone through as well.
	assert.InDelta(t, len(acked), len(rec.messages()), 1)
}

func TestRedisBackplaneRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	pub := openRedis(t, RedisOptions{Client: srv.Client(t)})
	b := openRedis(t, RedisOptions{Client: srv.Client(t)})
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()

	var f flow
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go f.run(fctx, pub, "t", done)
	rec.waitN(t, 30)
	srv.Stop(t)
	time.Sleep(300 * time.Millisecond)
	srv.Start(t)
	// After the restart, messages flow again.
	ackedBefore, _ := f.snapshot()
	rec.wait(t, "messages after the restart", func(msgs []*Message) bool {
		return len(msgs) > 0 && msgs[len(msgs)-1].ID.Compare(ackedBefore[len(ackedBefore)-1]) > 0
	})
	rec.waitN(t, len(rec.messages())+20)
	stop()
	<-done
	acked, fails := f.snapshot()
	rec.wait(t, "the last acknowledged message", func(msgs []*Message) bool {
		return len(msgs) > 0 && msgs[len(msgs)-1].ID.Compare(acked[len(acked)-1]) >= 0
	})
	missing := checkDelivered(t, rec, acked)
	t.Logf("acked %d, failed %d, received %d, missing (reported as a gap) %d, gaps %d",
		len(acked), fails, len(rec.messages()), missing, rec.gapCount())
	// The restarted server lost the stream, so the subscriber cannot prove
	// it missed nothing: it must say so.
	assert.Positive(t, rec.gapCount(), "a restart that lost history is reported")
}

func TestRedisBackplaneBatchesPublishes(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	c := srv.Client(t)
	b := openRedis(t, RedisOptions{Client: c})
	require.NoError(t, c.ConfigResetStat(ctx).Err())
	const pubs, each = 64, 40
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for i := range each {
				_, err := b.Publish(ctx, fmt.Sprintf("t%d", p%4), fmt.Appendf(nil, "%d", i), PublishOptions{})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	calls := scriptCalls(t, c)
	t.Logf("%d publishes in %d script calls", pubs*each, calls)
	assert.Less(t, calls, pubs*each/2, "concurrent publishes share script calls")
	n, err := c.XLen(ctx, b.key("t0")).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(pubs/4*each), n)
}

// scriptCalls returns how many EVAL/EVALSHA calls Redis has served.
func scriptCalls(t *testing.T, c *redis.Client) int {
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	total := 0
	for line := range strings.SplitSeq(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(n)
		require.NoError(t, err)
		total += v
	}
	return total
}

func TestRedisBackplaneDown(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := srv.Client(t)
	b := openRedis(t, RedisOptions{Client: c})
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Subscribe(ctx, "t", SubscribeOptions{}, newRecorder())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = b.Publish(context.Background(), "t", []byte("x"), PublishOptions{})
	assert.Error(t, err)
	assert.False(t, errors.Is(err, ErrClosed))
	_, err = b.History(context.Background(), "t", HistoryOptions{})
	assert.Error(t, err)

	// It comes back by itself.
	srv.Start(t)
	rec := newRecorder()
	sub, err := b.Subscribe(context.Background(), "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()
	id, err := b.Publish(context.Background(), "t", []byte("y"), PublishOptions{})
	require.NoError(t, err)
	assert.Equal(t, []ID{id}, ids(rec.waitN(t, 1)))
}

func TestNewRedisBackplaneErrors(t *testing.T) {
	_, err := NewRedisBackplane(RedisOptions{})
	assert.Error(t, err)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	_, err = NewRedisBackplane(RedisOptions{Client: ring})
	assert.Error(t, err)
}

// Redis pub/sub ignores the database number: two applications separated
// only by it must still not hear each other.
func TestRedisBackplaneDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	b11 := openRedis(t, RedisOptions{Client: db.ClientDB(t, 11), Prefix: db.Prefix})
	b12 := openRedis(t, RedisOptions{Client: db.ClientDB(t, 12), Prefix: db.Prefix})
	rec11, rec12 := newRecorder(), newRecorder()
	s11, err := b11.Subscribe(ctx, "room", SubscribeOptions{}, rec11)
	require.NoError(t, err)
	defer s11.Close()
	s12, err := b12.Subscribe(ctx, "room", SubscribeOptions{}, rec12)
	require.NoError(t, err)
	defer s12.Close()

	var want11, want12 []ID
	for i := range 20 {
		id, err := b11.Publish(ctx, "room", fmt.Appendf(nil, "11:%d", i), PublishOptions{})
		require.NoError(t, err)
		want11 = append(want11, id)
		id, err = b12.Publish(ctx, "room", fmt.Appendf(nil, "12:%d", i), PublishOptions{})
		require.NoError(t, err)
		want12 = append(want12, id)
	}
	_, err = b11.Publish(ctx, "room", []byte("typing"), PublishOptions{Ephemeral: true})
	require.NoError(t, err)
	rec11.waitN(t, 21)
	rec12.waitN(t, 20)
	settle()
	assert.Equal(t, want11, ids(rec11.messages()[:20]))
	assert.Equal(t, want12, ids(rec12.messages()), "database 12 hears only its own messages")
	assert.Zero(t, rec11.gapCount()+rec12.gapCount())
}

// A payload on a topic's channel whose IDs are not the next ones the
// stream holds is checked against the stream: a forged far-future ID is
// dropped instead of moving the node's position past every real message.
func TestRedisBackplaneForgedPayload(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	admin := db.Client(t)
	b := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix})
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "room", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()
	_, err = b.Publish(ctx, "room", []byte("real"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 1)

	ch := b.channel("room")
	forge := func(prev string) {
		t.Helper()
		p := payloadMagic + prev + "\n99999999999999-0 6\nforged"
		require.NoError(t, admin.Publish(ctx, ch, p).Err())
	}
	// publishUntilDelivered publishes until a message gets through.
	publishUntilDelivered := func() (n int) {
		t.Helper()
		for n = 1; ; n++ {
			id, err := b.Publish(ctx, "room", []byte("real"), PublishOptions{})
			require.NoError(t, err)
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if msgs := rec.messages(); msgs[len(msgs)-1].ID == id {
					return n
				}
			}
			require.Less(t, n, 10, "the topic stays silent")
		}
	}

	// Not the next one the stream holds: checked and dropped.
	forge("0-0")
	require.Equal(t, 1, publishUntilDelivered())
	require.Zero(t, rec.gapCount())
	for _, m := range rec.messages() {
		require.NotEqual(t, "forged", string(m.Data))
	}

	// A payload that names the right previous entry is taken at its word,
	// but the next real message shows the position is not in the stream:
	// the subscribers get a gap and the messages that follow, not silence.
	last := rec.messages()[len(rec.messages())-1].ID
	forge(last.String())
	n := publishUntilDelivered()
	t.Logf("delivery resumed after %d publishes, %d gaps", n, rec.gapCount())
	require.Positive(t, rec.gapCount(), "the forged position is reported")
}
