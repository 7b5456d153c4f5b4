package tasks

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// TestRedisStoreRediscoversQueuesAfterDataLoss restarts a Redis without
// persistence under a store that had used its queue: the store must not
// go on trusting its memory of the queue's registration, or maintenance
// never takes over a crashed worker's tasks and Get and Counts don't see
// them.
func TestRedisStoreRediscoversQueuesAfterDataLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	s := newRedisStore(t, client, "loss:", storeConfig{})
	r := newRunner(t, s, Options{Queues: map[string]int{"mail": 1}}, true)
	_, err := r.Enqueue(ctx, "job", nil, Queue("mail"))
	require.NoError(t, err)

	srv.Restart(t) // empty: no persistence
	var task *Task
	eventually(t, 10*time.Second, func() bool {
		task, err = r.Enqueue(ctx, "job", nil, Queue("mail"))
		return err == nil
	}, "enqueue after the restart: %v", err)

	got, err := r.Get(ctx, task.ID)
	require.NoError(t, err, "Get finds a task of a queue Redis forgot")
	assert.Equal(t, Pending, got.State)
	counts, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, counts["mail"][Pending])
	page, err := r.List(ctx, ListOptions{Queue: "mail"})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)

	// A worker claims the task and dies: another runner's maintenance
	// takes it over once the lease expires.
	leases, err := s.Claim(ctx, "dead-node", []string{"mail"}, 1, time.Second)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	ran := make(chan int, 1)
	Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error {
		if j.ID == task.ID {
			ran <- j.Attempt
		}
		return nil
	})
	startRun(t, r)
	select {
	case a := <-ran:
		assert.Equal(t, 2, a)
	case <-time.After(10 * time.Second):
		t.Fatal("the dead worker's task was not taken over")
	}
	waitState(t, r, task.ID, Succeeded, 5*time.Second)
}
