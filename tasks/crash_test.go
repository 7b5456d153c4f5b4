package tasks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	crashChildEnv  = "RTKIT_TASKS_CRASH_CHILD"
	crashPrefixEnv = "RTKIT_TASKS_CRASH_PREFIX"
	crashLease     = 2 * time.Second
)

// crashWork is the crash test's handler: it records the task's completion
// in Redis (so duplicates are counted) and takes a few ms, so that tasks
// are mid-flight when the worker is killed.
func crashWork(rdb redis.UniversalClient, prefix string) func(ctx context.Context, j *Job[int]) error {
	return func(ctx context.Context, j *Job[int]) error {
		time.Sleep(time.Duration(1+rand.IntN(4)) * time.Millisecond)
		return rdb.HIncrBy(ctx, prefix+"done", strconv.Itoa(j.Payload), 1).Err()
	}
}

// TestCrashChild is the worker process of TestRedisCrashTakeover; it runs
// only when that test starts it.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("the crash test's worker process")
	}
	prefix := os.Getenv(crashPrefixEnv)
	opts, err := redis.ParseURL("redis://" + redistest.Addr())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	s, err := NewRedisStore(RedisOptions{Client: rdb, Prefix: prefix})
	require.NoError(t, err)
	r := NewRunner(Options{Store: s, Concurrency: 50, LeaseTTL: crashLease, Logger: quiet, Node: "child"})
	Handle(r, "crash.work", crashWork(rdb, prefix))
	_ = r.Run(context.Background()) // until SIGKILL
}

// TestRedisCrashTakeover enqueues 10,000 tasks, lets a worker in a child
// process run some of them, kills it with SIGKILL at a random point, and
// checks that another worker completes every task, the killed worker's
// leased ones within the takeover time.
func TestRedisCrashTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process for several seconds")
	}
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client(t)
	prefix := db.Prefix + "crash:"
	ctx := context.Background()
	const n = 10_000
	store := newRedisStore(t, rdb, prefix, storeConfig{})
	r := newRunner(t, store, Options{Concurrency: 50, LeaseTTL: crashLease}, true)
	Handle(r, "crash.work", crashWork(rdb, prefix))
	enq := NewRunner(Options{Store: store, Logger: quiet})
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				if _, err := enq.Enqueue(ctx, "crash.work", i); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	child.Env = append(os.Environ(), crashChildEnv+"=1", crashPrefixEnv+"="+prefix, "REDIS_URL=redis://"+redistest.Addr())
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	require.NoError(t, child.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	killAt := int64(1000 + rand.IntN(n/2))
	deadline := time.Now().Add(60 * time.Second)
	for {
		done, err := rdb.HLen(ctx, prefix+"done").Result()
		require.NoError(t, err)
		if done >= killAt {
			break
		}
		require.True(t, time.Now().Before(deadline), "the child ran only %d tasks in 60s", done)
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	killed = true
	_ = child.Wait()
	kill := time.Now()
	inFlight, err := store.List(ctx, ListOptions{State: Active, Limit: 1000})
	require.NoError(t, err)
	doneAtKill, _ := rdb.HLen(ctx, prefix+"done").Result()
	t.Logf("killed the worker after %d completions; %d tasks were leased to it", doneAtKill, len(inFlight.Tasks))

	startRun(t, r)
	for _, task := range inFlight.Tasks {
		waitState(t, r, task.ID, Succeeded, crashLease+30*time.Second)
	}
	takeover := time.Since(kill)
	eventually(t, 120*time.Second, func() bool {
		c, err := store.Counts(ctx)
		return err == nil && c[DefaultQueue][Succeeded] == n
	}, "all %d tasks succeed", n)
	counts, err := rdb.HGetAll(ctx, prefix+"done").Result()
	require.NoError(t, err)
	dups := 0
	for _, v := range counts {
		c, _ := strconv.Atoi(v)
		dups += c - 1
	}
	fmt.Printf("crash test: %d tasks, killed after %d, %d leased to the dead worker, all taken over in %v (lease %v), %d lost, %d duplicate runs\n",
		n, doneAtKill, len(inFlight.Tasks), takeover.Round(time.Millisecond), crashLease, n-len(counts), dups)
	assert.Len(t, counts, n, "every task ran")
	assert.LessOrEqual(t, takeover, crashLease+3*time.Second, "the dead worker's tasks are taken over within the lease and a maintenance round")
	assert.LessOrEqual(t, dups, len(inFlight.Tasks), "only tasks in flight at the kill may run twice")
}
