package tasks

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// pausingClient returns a client of the Redis at addr whose reads time out after
// 100ms and which retries a call up to 10 times: a Redis paused (SIGSTOP)
// for longer than the timeout makes it send calls again that Redis runs
// when it resumes, as well as the first ones.
func pausingClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
		DialTimeout: 200 * time.Millisecond, MaxRetries: 10,
		MinRetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisStorePausedRedisRunsEachTaskOnce enqueues and runs tasks
// while Redis is paused three times past the client's read timeout: the
// client retries calls Redis then runs twice, and still every task is
// enqueued once, runs once and succeeds.
func TestRedisStorePausedRedisRunsEachTaskOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.StartServer(t)
	s := newRedisStore(t, pausingClient(t, srv.Addr()), "pause:", storeConfig{})
	r := newRunner(t, s, Options{Concurrency: 10, LeaseTTL: 8 * time.Second})
	var mu sync.Mutex
	runs := make(map[string]int)
	Handle(r, "job", func(ctx context.Context, j *Job[int]) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		return nil
	})

	const n, senders = 1000, 5
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := g; i < n; i += senders {
				task, err := r.Enqueue(ctx, "job", i)
				if !assert.NoError(t, err) {
					return
				}
				ids <- task.ID
				time.Sleep(time.Millisecond)
			}
		})
	}
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		srv.Pause(t)
		time.Sleep(400 * time.Millisecond)
		srv.Resume(t)
	}
	wg.Wait()
	close(ids)
	require.Len(t, ids, n)
	eventually(t, 60*time.Second, func() bool {
		c, err := r.Counts(ctx)
		return err == nil && c[DefaultQueue][Succeeded] == n
	}, "every task succeeded")
	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[State]int{Succeeded: n, Pending: 0, Scheduled: 0, Active: 0, Retry: 0, Dead: 0, Cancelled: 0}, c[DefaultQueue])
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for id := range ids {
		if runs[id] != 1 {
			twice++
			t.Errorf("task %s ran %d times", id, runs[id])
		}
	}
	t.Logf("%d tasks, %d ran more than once", n, twice)
}
