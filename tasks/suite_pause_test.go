package tasks

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// pauseCases are the conformance cases of queue pause ([Pauser]).
func pauseCases(h harness) map[string]func(t *testing.T) {
	ctx := context.Background()
	// settle lets a runner claim whatever it would claim: instant in the
	// memory store's bubble.
	settle := func() { time.Sleep(max(3*h.slack, time.Second)) }
	return map[string]func(t *testing.T){
		"PausedQueueAcceptsButDoesNotRun": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{Queues: map[string]int{"a": 1, "b": 1}})
			release := make(chan struct{})
			Handle(r, "work", func(ctx context.Context, j *Job[string]) error {
				if j.Payload == "long" {
					<-release
				}
				return nil
			})
			paused, err := r.PausedQueues(ctx)
			require.NoError(t, err)
			assert.Equal(t, []string{}, paused)

			long, err := r.Enqueue(ctx, "work", "long", Queue("a"))
			require.NoError(t, err)
			waitState(t, r, long.ID, Active, 5*time.Second)
			require.NoError(t, r.PauseQueue(ctx, "a"))
			require.NoError(t, r.PauseQueue(ctx, "a")) // idempotent
			require.NoError(t, r.PauseQueue(ctx, "empty"))
			paused, err = r.PausedQueues(ctx)
			require.NoError(t, err)
			assert.Equal(t, []string{"a", "empty"}, paused)

			held, err := r.Enqueue(ctx, "work", "x", Queue("a"))
			require.NoError(t, err)
			due, err := r.Enqueue(ctx, "work", "x", Queue("a"), Delay(100*time.Millisecond))
			require.NoError(t, err)
			other, err := r.Enqueue(ctx, "work", "x", Queue("b"))
			require.NoError(t, err)
			waitState(t, r, other.ID, Succeeded, 5*time.Second) // other queues run
			close(release)
			waitState(t, r, long.ID, Succeeded, 5*time.Second) // running tasks finish
			settle()
			got, err := r.Get(ctx, held.ID)
			require.NoError(t, err)
			assert.Equal(t, Pending, got.State)
			got, err = r.Get(ctx, due.ID)
			require.NoError(t, err)
			assert.Contains(t, []State{Scheduled, Pending}, got.State)
			counts, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, counts["a"][Pending])

			require.NoError(t, r.ResumeQueue(ctx, "a"))
			require.NoError(t, r.ResumeQueue(ctx, "b")) // not paused: nothing
			waitState(t, r, held.ID, Succeeded, 5*time.Second)
			waitState(t, r, due.ID, Succeeded, 5*time.Second)
			paused, err = r.PausedQueues(ctx)
			require.NoError(t, err)
			assert.Equal(t, []string{"empty"}, paused)
		},
		"PauseBadQueue": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			assert.ErrorIs(t, r.PauseQueue(ctx, "has space"), ErrInvalid)
			assert.ErrorIs(t, r.ResumeQueue(ctx, ""), ErrInvalid)
		},
	}
}

type noPauseStore struct{ Store }

func TestPauseUnsupportedStore(t *testing.T) {
	r := NewRunner(Options{Store: noPauseStore{NewMemoryStore(MemoryOptions{})}})
	assert.ErrorIs(t, r.PauseQueue(context.Background(), "a"), errors.ErrUnsupported)
	_, err := r.PausedQueues(context.Background())
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}

// TestRedisPauseTwoNodes pauses a queue through one node: the other
// claims nothing from it, a node started later (a restart) sees the
// pause, and a resume through it lets both run the queue again.
func TestRedisPauseTwoNodes(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	node := func(name string) (*Runner, func()) {
		r := newRunner(t, newRedisStore(t, db.Client(t), db.Prefix, storeConfig{}), Options{Node: name}, true)
		Handle(r, "work", func(ctx context.Context, j *Job[int]) error { return nil })
		return r, startRun(t, r)
	}
	a, stopA := node("a")
	b, _ := node("b")
	require.NoError(t, a.PauseQueue(ctx, DefaultQueue))
	var ids []string
	for i := range 20 {
		task, err := b.Enqueue(ctx, "work", i)
		require.NoError(t, err)
		ids = append(ids, task.ID)
	}
	time.Sleep(time.Second) // both nodes had every chance to claim
	counts, err := b.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 20, counts[DefaultQueue][Pending], fmt.Sprint(counts))

	stopA() // node a restarts: a new store and runner on the same Redis
	c, _ := node("c")
	paused, err := c.PausedQueues(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{DefaultQueue}, paused)
	require.NoError(t, c.ResumeQueue(ctx, DefaultQueue))
	for _, id := range ids {
		waitState(t, b, id, Succeeded, 10*time.Second)
	}
	_ = a
}
