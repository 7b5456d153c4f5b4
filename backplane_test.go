package rtkit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs dial failures through a package-level logger; the
	// fault tests provoke many.
	redis.SetLogger(quietRedisLogger{})
	// After repeated dial failures go-redis starts a goroutine that sleeps
	// a second before it notices its client was closed; the fault tests
	// provoke it. It ends by itself and holds nothing of ours.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// recorder is a Handler that keeps what it receives.
type recorder struct {
	mu     sync.Mutex
	msgs   []*Message
	gaps   []ID
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) HandleMessage(m *Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) HandleGap(after ID) {
	r.mu.Lock()
	r.gaps = append(r.gaps, after)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) messages() []*Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) gapCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.gaps)
}

// wait waits until cond holds for the received messages.
func (r *recorder) wait(t testing.TB, what string, cond func(msgs []*Message) bool) []*Message {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		msgs := r.messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d messages, %d gaps", what, len(msgs), r.gapCount())
		}
	}
}

// waitN waits for at least n messages and returns them.
func (r *recorder) waitN(t testing.TB, n int) []*Message {
	t.Helper()
	return r.wait(t, fmt.Sprintf("%d messages", n), func(m []*Message) bool { return len(m) >= n })
}

// settle gives in-flight deliveries a moment, for checks that nothing
// more arrives.
func settle() { time.Sleep(50 * time.Millisecond) }

// harness opens backplanes of one implementation. Backplanes opened by one
// harness share topics where the implementation can (Redis).
type harness struct {
	name string
	open func(t *testing.T, o MemoryOptions) Backplane
	// subscribedTopics reports how many topics the backplane holds a
	// subscription for (Redis: as the server sees it).
	subscribedTopics func(t *testing.T, b Backplane) int
	// run runs one test case: inside a synctest bubble where the
	// implementation allows, so that its timers run on fake time.
	run func(t *testing.T, f func(t *testing.T))
}

func memoryHarness() harness {
	return harness{
		name: "memory",
		run: func(t *testing.T, f func(t *testing.T)) {
			synctest.Test(t, f)
		},
		open: func(t *testing.T, o MemoryOptions) Backplane {
			b := NewMemoryBackplane(o)
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
		subscribedTopics: func(t *testing.T, b Backplane) int {
			n := 0
			mb := b.(*MemoryBackplane)
			for i := range mb.shards {
				sh := &mb.shards[i]
				sh.mu.RLock()
				for _, tp := range sh.topics {
					if tp.subs.len() > 0 {
						n++
					}
				}
				sh.mu.RUnlock()
			}
			return n
		},
	}
}

func TestMemoryBackplaneConformance(t *testing.T) {
	t.Parallel()
	runConformance(t, memoryHarness())
}

// runConformance is the suite every Backplane implementation passes.
func runConformance(t *testing.T, h harness) {
	ctx := context.Background()
	topicN := 0
	var topicMu sync.Mutex
	topic := func(t *testing.T) string {
		topicMu.Lock()
		defer topicMu.Unlock()
		topicN++
		return fmt.Sprintf("conf:%s:%d", t.Name(), topicN)
	}

	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) { h.run(t, f) })
	}

	run("PublishSubscribeInOrder", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.True(t, sub.Recovered())
		assert.Equal(t, tp, sub.Topic())
		var ids []ID
		for i := range 100 {
			id, err := b.Publish(ctx, tp, fmt.Appendf(nil, "m%d", i), PublishOptions{})
			require.NoError(t, err)
			if len(ids) > 0 {
				require.Equal(t, 1, id.Compare(ids[len(ids)-1]), "ids must increase: %v after %v", id, ids[len(ids)-1])
			}
			ids = append(ids, id)
		}
		msgs := rec.waitN(t, 100)
		require.Len(t, msgs, 100)
		for i, m := range msgs {
			assert.Equal(t, ids[i], m.ID)
			assert.Equal(t, fmt.Sprintf("m%d", i), string(m.Data))
			assert.Equal(t, tp, m.Topic)
			assert.False(t, m.Ephemeral())
			assert.WithinDuration(t, time.Now(), m.Time, time.Minute)
			assert.Equal(t, int64(m.ID.MS), m.Time.UnixMilli())
		}
		assert.Zero(t, rec.gapCount())
	})

	run("MaxReplayKeepsTheNewest", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		var pub []ID
		for i := range 10 {
			id, err := b.Publish(ctx, tp, fmt.Appendf(nil, "m%d", i), PublishOptions{})
			require.NoError(t, err)
			pub = append(pub, id)
		}
		for _, c := range []struct {
			name      string
			opts      SubscribeOptions
			want      []ID
			recovered bool
		}{
			{"since, more missed than the cap", SubscribeOptions{Since: pub[2], MaxReplay: 3}, pub[7:], false},
			{"since, within the cap", SubscribeOptions{Since: pub[6], MaxReplay: 3}, pub[7:], true},
			{"from start", SubscribeOptions{FromStart: true, MaxReplay: 4}, pub[6:], false},
			{"no cap", SubscribeOptions{Since: pub[2]}, pub[3:], true},
		} {
			rec := newRecorder()
			sub, err := b.Subscribe(ctx, tp, c.opts, rec)
			require.NoError(t, err, c.name)
			rec.waitN(t, len(c.want))
			settle()
			assert.Equal(t, c.want, ids(rec.messages()), c.name)
			assert.Equal(t, c.recovered, sub.Recovered(), c.name)
			assert.Equal(t, pub[9], sub.Position(), c.name)
			sub.Close()
		}
	})

	run("ConcurrentPublishersStrictOrder", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 5000})
		tp := topic(t)
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, rec)
		require.NoError(t, err)
		defer sub.Close()
		const pubs, each = 8, 150
		var wg sync.WaitGroup
		idsMu := sync.Mutex{}
		seen := map[ID]bool{}
		for p := range pubs {
			wg.Go(func() {
				for i := range each {
					id, err := b.Publish(ctx, tp, fmt.Appendf(nil, "%d:%d", p, i), PublishOptions{})
					assert.NoError(t, err)
					idsMu.Lock()
					assert.False(t, seen[id], "duplicate id %v", id)
					seen[id] = true
					idsMu.Unlock()
				}
			})
		}
		wg.Wait()
		msgs := rec.waitN(t, pubs*each)
		require.Len(t, msgs, pubs*each)
		last := map[int]int{}
		for i, m := range msgs {
			if i > 0 {
				require.Equal(t, 1, m.ID.Compare(msgs[i-1].ID), "delivery out of id order at %d", i)
			}
			require.True(t, seen[m.ID])
			var p, n int
			_, err := fmt.Sscanf(string(m.Data), "%d:%d", &p, &n)
			require.NoError(t, err)
			if prev, ok := last[p]; ok {
				require.Equal(t, prev+1, n, "publisher %d reordered", p)
			}
			last[p] = n
		}
		hist, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		require.Len(t, hist.Messages, pubs*each)
		for i, m := range hist.Messages {
			assert.Equal(t, msgs[i].ID, m.ID)
		}
	})

	run("Ephemeral", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, rec)
		require.NoError(t, err)
		defer sub.Close()
		id1, err := b.Publish(ctx, tp, []byte("a"), PublishOptions{})
		require.NoError(t, err)
		id, err := b.Publish(ctx, tp, []byte("typing"), PublishOptions{Ephemeral: true})
		require.NoError(t, err)
		assert.True(t, id.IsZero())
		id3, err := b.Publish(ctx, tp, []byte("b"), PublishOptions{})
		require.NoError(t, err)
		msgs := rec.waitN(t, 3)
		assert.Equal(t, []string{"a", "typing", "b"}, datas(msgs))
		assert.True(t, msgs[1].Ephemeral())
		assert.False(t, msgs[1].Time.IsZero())
		hist, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		assert.Equal(t, []ID{id1, id3}, ids(hist.Messages))
	})

	run("SinceRecovers", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		var pubIDs []ID
		for i := range 10 {
			id, err := b.Publish(ctx, tp, fmt.Appendf(nil, "%d", i), PublishOptions{})
			require.NoError(t, err)
			pubIDs = append(pubIDs, id)
		}
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: pubIDs[4]}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.True(t, sub.Recovered())
		assert.Equal(t, pubIDs[9], sub.Position())
		id10, err := b.Publish(ctx, tp, []byte("10"), PublishOptions{})
		require.NoError(t, err)
		msgs := rec.waitN(t, 6)
		assert.Equal(t, append(slices.Clone(pubIDs[5:]), id10), ids(msgs))

		// Since the newest message: nothing from history, then live.
		rec2 := newRecorder()
		sub2, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: id10}, rec2)
		require.NoError(t, err)
		defer sub2.Close()
		assert.True(t, sub2.Recovered())
		assert.Equal(t, id10, sub2.Position())
		id11, err := b.Publish(ctx, tp, []byte("11"), PublishOptions{})
		require.NoError(t, err)
		assert.Equal(t, []ID{id11}, ids(rec2.waitN(t, 1)))
	})

	run("FromStartResumesAnEmptyTopic", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 3})
		tp := topic(t)
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, newRecorder())
		require.NoError(t, err)
		assert.True(t, sub.Position().IsZero(), "the topic has no message yet")
		require.NoError(t, sub.Close())
		var missed []ID
		for range 2 {
			id, err := b.Publish(ctx, tp, []byte("while away"), PublishOptions{})
			require.NoError(t, err)
			missed = append(missed, id)
		}
		rec := newRecorder()
		sub, err = b.Subscribe(ctx, tp, SubscribeOptions{FromStart: true}, rec)
		require.NoError(t, err)
		assert.True(t, sub.Recovered())
		assert.Equal(t, missed, ids(rec.waitN(t, 2)))
		require.NoError(t, sub.Close())

		// Once history has dropped messages, starting over is not complete.
		for range 3 {
			_, err := b.Publish(ctx, tp, []byte("more"), PublishOptions{})
			require.NoError(t, err)
		}
		rec = newRecorder()
		sub, err = b.Subscribe(ctx, tp, SubscribeOptions{FromStart: true}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.False(t, sub.Recovered())
		assert.Len(t, rec.waitN(t, 3), 3)

		empty, err := b.Subscribe(ctx, topic(t), SubscribeOptions{FromStart: true}, newRecorder())
		require.NoError(t, err)
		defer empty.Close()
		assert.True(t, empty.Recovered(), "nothing was ever published")
	})

	run("PositionResumesWithoutGap", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		var last ID
		for range 3 {
			id, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
			require.NoError(t, err)
			last = id
		}
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, newRecorder())
		require.NoError(t, err)
		assert.Equal(t, last, sub.Position())
		require.NoError(t, sub.Close())
		var missed []ID
		for range 2 {
			id, err := b.Publish(ctx, tp, []byte("y"), PublishOptions{})
			require.NoError(t, err)
			missed = append(missed, id)
		}
		rec := newRecorder()
		sub, err = b.Subscribe(ctx, tp, SubscribeOptions{Since: last}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.True(t, sub.Recovered())
		assert.Equal(t, missed, ids(rec.waitN(t, 2)))
	})

	run("SeamUnderConcurrentPublishing", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 100000})
		tp := topic(t)
		all := newRecorder()
		subAll, err := b.Subscribe(ctx, tp, SubscribeOptions{}, all)
		require.NoError(t, err)
		defer subAll.Close()
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		published := 0
		for p := range 3 {
			wg.Go(func() {
				for i := 0; pctx.Err() == nil; i++ {
					if _, err := b.Publish(ctx, tp, fmt.Appendf(nil, "%d:%d", p, i), PublishOptions{}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		// Join again and again at random points while publishing goes on.
		var joins []*recorder
		var starts []ID
		var subs []*Subscription
		for range 10 {
			msgs := all.waitN(t, len(all.messages())+20)
			since := msgs[len(msgs)/2].ID
			rec := newRecorder()
			s, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: since}, rec)
			require.NoError(t, err)
			require.True(t, s.Recovered())
			joins, starts, subs = append(joins, rec), append(starts, since), append(subs, s)
		}
		stop()
		wg.Wait()
		total, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		published = len(total.Messages)
		want := all.waitN(t, published)
		require.Len(t, want, published)
		for i, rec := range joins {
			i0 := slices.IndexFunc(want, func(m *Message) bool { return m.ID == starts[i] })
			require.GreaterOrEqual(t, i0, 0)
			exp := ids(want[i0+1:])
			got := ids(rec.waitN(t, len(exp)))
			require.Equal(t, exp, got, "join %d: gap or duplicate at the seam", i)
			assert.Zero(t, rec.gapCount())
			subs[i].Close()
		}
	})

	run("SinceTrimmedIsNotRecovered", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 5})
		tp := topic(t)
		var pubIDs []ID
		for range 20 {
			id, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
			require.NoError(t, err)
			pubIDs = append(pubIDs, id)
		}
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: pubIDs[2]}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.False(t, sub.Recovered())
		// What is retained still arrives, then live messages.
		assert.Equal(t, pubIDs[15:], ids(rec.waitN(t, 5)))
		id, err := b.Publish(ctx, tp, []byte("live"), PublishOptions{})
		require.NoError(t, err)
		assert.Equal(t, id, rec.waitN(t, 6)[5].ID)

		hist, err := b.History(ctx, tp, HistoryOptions{Since: pubIDs[2]})
		require.NoError(t, err)
		assert.False(t, hist.Complete)
	})

	run("SinceUnknownStillGetsLive", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		_, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
		require.NoError(t, err)
		future := ID{MS: uint64(time.Now().Add(24 * time.Hour).UnixMilli())}
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: future}, rec)
		require.NoError(t, err)
		defer sub.Close()
		assert.False(t, sub.Recovered())
		id, err := b.Publish(ctx, tp, []byte("y"), PublishOptions{})
		require.NoError(t, err)
		assert.Equal(t, []ID{id}, ids(rec.waitN(t, 1)))
	})

	run("HistoryBoundedByCount", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 5})
		tp := topic(t)
		var pubIDs []ID
		for range 12 {
			id, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
			require.NoError(t, err)
			pubIDs = append(pubIDs, id)
		}
		hist, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		assert.Equal(t, pubIDs[7:], ids(hist.Messages))
		assert.Equal(t, pubIDs[11], hist.Position)
		hist, err = b.History(ctx, tp, HistoryOptions{Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, pubIDs[10:], ids(hist.Messages))
		hist, err = b.History(ctx, tp, HistoryOptions{Since: pubIDs[8], Limit: 2})
		require.NoError(t, err)
		assert.True(t, hist.Complete)
		assert.Equal(t, pubIDs[10:], ids(hist.Messages))
		hist, err = b.History(ctx, tp, HistoryOptions{Since: pubIDs[8]})
		require.NoError(t, err)
		assert.Equal(t, pubIDs[9:], ids(hist.Messages))
		hist, err = b.History(ctx, topic(t), HistoryOptions{})
		require.NoError(t, err)
		assert.Empty(t, hist.Messages)
		assert.True(t, hist.Position.IsZero())
	})

	run("TopicHistoryOverride", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: 100, TopicHistory: func(topic string) (int, time.Duration) {
			if len(topic) > 0 && topic[len(topic)-1] == '!' {
				return 2, 0
			}
			return 0, 0
		}})
		small, big := topic(t)+"!", topic(t)
		for range 5 {
			_, err := b.Publish(ctx, small, []byte("x"), PublishOptions{})
			require.NoError(t, err)
			_, err = b.Publish(ctx, big, []byte("x"), PublishOptions{})
			require.NoError(t, err)
		}
		hs, err := b.History(ctx, small, HistoryOptions{})
		require.NoError(t, err)
		assert.Len(t, hs.Messages, 2)
		hb, err := b.History(ctx, big, HistoryOptions{})
		require.NoError(t, err)
		assert.Len(t, hb.Messages, 5)
	})

	run("HistoryBoundedByAge", func(t *testing.T) {
		const ttl = 400 * time.Millisecond
		b := h.open(t, MemoryOptions{HistoryTTL: ttl})
		tp := topic(t)
		for range 3 {
			_, err := b.Publish(ctx, tp, []byte("old"), PublishOptions{})
			require.NoError(t, err)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		id, err := b.Publish(ctx, tp, []byte("new"), PublishOptions{})
		require.NoError(t, err)
		hist, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		assert.Equal(t, []ID{id}, ids(hist.Messages), "messages older than the TTL are trimmed on publish")
		// An idle topic's history goes as a whole.
		require.Eventually(t, func() bool {
			hist, err := b.History(ctx, tp, HistoryOptions{})
			return err == nil && len(hist.Messages) == 0
		}, 5*time.Second, 50*time.Millisecond)
	})

	run("NoHistory", func(t *testing.T) {
		b := h.open(t, MemoryOptions{HistorySize: -1})
		tp := topic(t)
		rec := newRecorder()
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, rec)
		require.NoError(t, err)
		defer sub.Close()
		id1, err := b.Publish(ctx, tp, []byte("a"), PublishOptions{})
		require.NoError(t, err)
		id2, err := b.Publish(ctx, tp, []byte("b"), PublishOptions{})
		require.NoError(t, err)
		assert.Equal(t, 1, id2.Compare(id1))
		assert.Equal(t, []ID{id1, id2}, ids(rec.waitN(t, 2)))
		hist, err := b.History(ctx, tp, HistoryOptions{})
		require.NoError(t, err)
		assert.Empty(t, hist.Messages)
		sub2, err := b.Subscribe(ctx, tp, SubscribeOptions{Since: id1}, newRecorder())
		require.NoError(t, err)
		defer sub2.Close()
		assert.False(t, sub2.Recovered())
	})

	run("SubscribersShareMessage", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
		for _, r := range recs {
			sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, r)
			require.NoError(t, err)
			defer sub.Close()
		}
		_, err := b.Publish(ctx, tp, []byte("shared"), PublishOptions{})
		require.NoError(t, err)
		first := recs[0].waitN(t, 1)[0]
		for _, r := range recs[1:] {
			assert.Same(t, first, r.waitN(t, 1)[0], "one *Message per node, shared by every local subscriber")
		}
	})

	run("UnsubscribeReleases", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		before := h.subscribedTopics(t, b)
		recs := make([]*recorder, 20)
		subs := make([]*Subscription, 20)
		for i := range subs {
			recs[i] = newRecorder()
			var err error
			subs[i], err = b.Subscribe(ctx, tp, SubscribeOptions{}, recs[i])
			require.NoError(t, err)
		}
		assert.Equal(t, before+1, h.subscribedTopics(t, b), "one subscription per topic per node")
		for _, s := range subs[1:] {
			require.NoError(t, s.Close())
			require.NoError(t, s.Close(), "Close is idempotent")
		}
		_, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
		require.NoError(t, err)
		recs[0].waitN(t, 1)
		settle()
		for _, r := range recs[1:] {
			assert.Empty(t, r.messages(), "closed subscription received a message")
		}
		require.NoError(t, subs[0].Close())
		require.Eventually(t, func() bool { return h.subscribedTopics(t, b) == before }, 5*time.Second, 20*time.Millisecond)
	})

	run("CloseFromHandler", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		var sub *Subscription
		var mu sync.Mutex
		got := 0
		done := make(chan struct{})
		sub, err := b.Subscribe(ctx, tp, SubscribeOptions{}, handlerFunc(func(m *Message) {
			mu.Lock()
			defer mu.Unlock()
			got++
			if got == 1 {
				sub.Close()
				close(done)
			}
		}))
		require.NoError(t, err)
		for range 5 {
			_, err := b.Publish(ctx, tp, []byte("x"), PublishOptions{})
			require.NoError(t, err)
		}
		<-done
		settle()
		mu.Lock()
		assert.Equal(t, 1, got)
		mu.Unlock()
	})

	run("ManyTopics", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		base := topic(t)
		const n = 200
		recs := make([]*recorder, n)
		for i := range n {
			recs[i] = newRecorder()
			sub, err := b.Subscribe(ctx, fmt.Sprintf("%s/%d", base, i), SubscribeOptions{}, recs[i])
			require.NoError(t, err)
			defer sub.Close()
		}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := b.Publish(ctx, fmt.Sprintf("%s/%d", base, i), fmt.Appendf(nil, "%d", i), PublishOptions{})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		for i, r := range recs {
			msgs := r.waitN(t, 1)
			assert.Equal(t, []string{fmt.Sprint(i)}, datas(msgs))
		}
		settle()
		for _, r := range recs {
			assert.Len(t, r.messages(), 1)
		}
	})

	run("BadInput", func(t *testing.T) {
		b := h.open(t, MemoryOptions{MaxMessageSize: 10})
		for _, bad := range []string{"", "has space", "a{b", "b}", "tab\t", "nl\n", "\x00", string(make([]byte, MaxTopicLen+1)), "\xff\xfe"} {
			_, err := b.Publish(ctx, bad, nil, PublishOptions{})
			assert.ErrorIs(t, err, ErrInvalidTopic, "%q", bad)
			_, err = b.Subscribe(ctx, bad, SubscribeOptions{}, newRecorder())
			assert.ErrorIs(t, err, ErrInvalidTopic, "%q", bad)
			_, err = b.History(ctx, bad, HistoryOptions{})
			assert.ErrorIs(t, err, ErrInvalidTopic, "%q", bad)
		}
		long := make([]byte, MaxTopicLen)
		for i := range long {
			long[i] = 'a'
		}
		_, err := b.Publish(ctx, string(long), nil, PublishOptions{})
		assert.NoError(t, err, "a topic of MaxTopicLen bytes is fine")
		_, err = b.Publish(ctx, "ünïcode:topic/1", []byte("0123456789"), PublishOptions{})
		assert.NoError(t, err)
		_, err = b.Publish(ctx, topic(t), []byte("0123456789!"), PublishOptions{})
		assert.ErrorIs(t, err, ErrMessageTooLarge)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err = b.Publish(cctx, topic(t), nil, PublishOptions{})
		assert.ErrorIs(t, err, context.Canceled)
	})

	run("Close", func(t *testing.T) {
		b := h.open(t, MemoryOptions{})
		tp := topic(t)
		rec := newRecorder()
		_, err := b.Subscribe(ctx, tp, SubscribeOptions{}, rec)
		require.NoError(t, err)
		_, err = b.Publish(ctx, tp, []byte("before"), PublishOptions{})
		require.NoError(t, err)
		rec.waitN(t, 1)
		require.NoError(t, b.Close())
		require.NoError(t, b.Close(), "Close is idempotent")
		_, err = b.Publish(ctx, tp, []byte("after"), PublishOptions{})
		assert.ErrorIs(t, err, ErrClosed)
		_, err = b.Subscribe(ctx, tp, SubscribeOptions{}, newRecorder())
		assert.ErrorIs(t, err, ErrClosed)
		_, err = b.History(ctx, tp, HistoryOptions{})
		assert.ErrorIs(t, err, ErrClosed)
		settle()
		assert.Len(t, rec.messages(), 1)
	})
}

// handlerFunc adapts a function to Handler; gaps fail loudly.
type handlerFunc func(m *Message)

func (f handlerFunc) HandleMessage(m *Message) { f(m) }
func (f handlerFunc) HandleGap(ID)             { panic("unexpected gap") }

func ids(msgs []*Message) []ID {
	out := make([]ID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func datas(msgs []*Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Data)
	}
	return out
}
