package rtkit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// Regression tests for faults found in review: each lost messages
// silently or deadlocked.

type funcHandler struct {
	msg func(*Message)
	gap func(ID)
}

func (h funcHandler) HandleMessage(m *Message) {
	if h.msg != nil {
		h.msg(m)
	}
}

func (h funcHandler) HandleGap(after ID) {
	if h.gap != nil {
		h.gap(after)
	}
}

func payloadOf(fromMS, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%d-0\n", payloadMagic, fromMS-1)
	for i := range n {
		fmt.Fprintf(&b, "%d-0 1\nx", fromMS+i)
	}
	return b.String()
}

// Once the held-message buffer of a syncing topic overflows, nothing more
// may be held: a later, smaller payload would leave a hole that the next
// stream read (from the last delivered ID) could not fill.
func TestRedisTopicBufferOverflowLeavesNoHole(t *testing.T) {
	b := &RedisBackplane{log: slog.New(slog.DiscardHandler)}
	rec := newRecorder()
	s := newSubscriber(rec, false)
	tp := &redisTopic{name: "x", key: "k", channel: "k", size: 100000, ready: make(chan struct{}), hasLast: true, last: ID{MS: 1}}
	tp.subs.add(s)
	s.last = ID{MS: 1}
	sh := &redisShard{b: b, channels: map[string]*redisTopic{"k": tp}}
	tp.shard = sh

	sh.deliver("k", payloadOf(2, 9990))  // held
	sh.deliver("k", payloadOf(9992, 20)) // overflows
	sh.deliver("k", payloadOf(10012, 5)) // must not be held past the hole
	var stream []*Message
	for ms := 1; ms <= 10016; ms++ {
		stream = append(stream, &Message{Topic: "x", ID: ID{MS: uint64(ms)}})
	}
	require.True(t, tp.applySync(0, syncResume, ID{MS: 1}, 0, stream[:1], stream[0].ID), "an overflow asks for another read")
	from := tp.last
	var reread []*Message
	for _, m := range stream {
		if m.ID.Compare(from) >= 0 {
			reread = append(reread, m)
		}
	}
	require.False(t, tp.applySync(0, syncResume, from, 0, reread, reread[len(reread)-1].ID))
	require.Equal(t, ids(stream[1:]), ids(rec.messages()), "every message, in order")
	require.Zero(t, rec.gapCount())
}

// A topic that had delivered nothing when its connection dropped cannot
// prove that nothing expired meanwhile: after an outage longer than the
// history TTL it must report a gap rather than lose messages silently.
func TestRedisResyncFromEmptyReportsExpiredMessages(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	admin := srv.Client(t)
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "sub", "on", ">pw", "+@all", "~*", "&*").Err())
	subClient := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "sub", Password: "pw"})
	defer subClient.Close()
	const ttl = 300 * time.Millisecond
	pub := openRedis(t, RedisOptions{Client: admin, HistoryTTL: ttl})
	b := openRedis(t, RedisOptions{Client: subClient, HistoryTTL: ttl})
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()

	// Cut the subscriber's node off Redis, publish, let the stream expire.
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "sub", "off").Err())
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "USER", "sub").Err())
	time.Sleep(100 * time.Millisecond)
	lost, err := pub.Publish(ctx, "t", []byte("lost"), PublishOptions{})
	require.NoError(t, err)
	time.Sleep(2 * ttl)
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "sub", "on").Err())

	deadline := time.Now().Add(15 * time.Second)
	for len(rec.messages()) == 0 && time.Now().Before(deadline) {
		_, err := pub.Publish(ctx, "t", []byte("marker"), PublishOptions{})
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	settle()
	got := false
	for _, m := range rec.messages() {
		got = got || m.ID == lost
	}
	require.True(t, got || rec.gapCount() > 0, "acknowledged %v lost without HandleGap", lost)
}

// A handler that closes its subscription (the topic's last) while the
// topic is being caught up after a reconnect must not deadlock with a
// second reconnect.
func TestRedisCloseFromHandlerDuringResync(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	admin := srv.Client(t)
	pub := openRedis(t, RedisOptions{Client: srv.Client(t)})
	b := openRedis(t, RedisOptions{Client: srv.Client(t)})

	var sub *Subscription
	var armed atomic.Bool
	var n atomic.Int64
	entered, closed := make(chan struct{}), make(chan struct{})
	h := funcHandler{msg: func(m *Message) {
		n.Add(1)
		if armed.CompareAndSwap(true, false) {
			close(entered)
			time.Sleep(300 * time.Millisecond) // a slow moment in the handler
			sub.Close()
			close(closed)
		}
	}}
	sub, err := b.Subscribe(ctx, "t", SubscribeOptions{}, h)
	require.NoError(t, err)
	_, err = pub.Publish(ctx, "t", []byte("warm"), PublishOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return n.Load() == 1 }, 5*time.Second, time.Millisecond)

	armed.Store(true)
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	go func() {
		for i := range 20 {
			select {
			case <-entered:
				return
			default:
			}
			_, _ = pub.Publish(ctx, "t", fmt.Appendf(nil, "%d", i), PublishOptions{})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	<-entered
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: Subscription.Close from the handler never returned")
	}
}

// A batch whose reply is lost is sent again by the client (MaxRetries,
// default 3) and by the backplane itself: every copy reaches Redis once
// the server wakes up, yet the message must be published once.
func TestRedisRetriedBatchPublishedOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	admin := srv.Client(t)
	// The default MaxRetries (3), with a read timeout short enough for
	// every attempt to time out while the server is paused.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 200 * time.Millisecond})
	defer c.Close()
	pub := openRedis(t, RedisOptions{Client: c})
	sub := openRedis(t, RedisOptions{Client: srv.Client(t)})
	rec := newRecorder()
	s, err := sub.Subscribe(ctx, "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer s.Close()
	_, err = pub.Publish(ctx, "t", []byte("warm"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 1)

	srv.Pause(t)
	type result struct {
		id  ID
		err error
	}
	res := make(chan result, 1)
	go func() {
		id, err := pub.Publish(ctx, "t", []byte("once"), PublishOptions{})
		res <- result{id, err}
	}()
	// Past the client's read timeout, so the reply of the first attempt is
	// lost, but not past its retries, which then reach a live server.
	time.Sleep(350 * time.Millisecond)
	srv.Resume(t)
	r := <-res
	_, err = pub.Publish(ctx, "t", []byte("after"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 3)
	settle()

	entries, err := admin.XRange(ctx, pub.key("t"), "-", "+").Result()
	require.NoError(t, err)
	var once []string
	for _, e := range entries {
		if e.Values["d"] == "once" {
			once = append(once, e.ID)
		}
	}
	require.Len(t, once, 1, "the batch was published %d times", len(once))
	if r.err == nil {
		require.Equal(t, once[0], r.id.String(), "Publish returns the ID the message got")
	}
	var got []string
	for _, m := range rec.messages() {
		got = append(got, string(m.Data))
	}
	require.Equal(t, []string{"warm", "once", "after"}, got)
	t.Logf("Publish during the pause returned %v, %v", r.id, r.err)
}

// A topic idle for longer than its history TTL loses its stream; the next
// payload names no previous entry, which the node checks against the
// stream: nothing was missed, so no gap is reported.
func TestRedisIdlePastTTLIsNoGap(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	const ttl = 200 * time.Millisecond
	pub := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix, HistoryTTL: ttl})
	b := openRedis(t, RedisOptions{Client: db.Client(t), Prefix: db.Prefix, HistoryTTL: ttl})
	rec := newRecorder()
	sub, err := b.Subscribe(ctx, "t", SubscribeOptions{}, rec)
	require.NoError(t, err)
	defer sub.Close()
	first, err := pub.Publish(ctx, "t", []byte("1"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 1)
	admin := db.Client(t)
	require.Eventually(t, func() bool {
		n, err := admin.Exists(ctx, pub.key("t")).Result()
		return err == nil && n == 0
	}, 5*time.Second, 20*time.Millisecond, "the stream expires")
	second, err := pub.Publish(ctx, "t", []byte("2"), PublishOptions{})
	require.NoError(t, err)
	rec.waitN(t, 2)
	settle()
	require.Equal(t, []ID{first, second}, ids(rec.messages()))
	require.Zero(t, rec.gapCount())
}
