package tasks

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/require"
)

// Two runners on a 3-primary + 3-replica Redis Cluster enqueue and run
// tasks while the primary of the queue's slot is killed: after the replica
// takes over, enqueueing and running resume, and every acknowledged task
// that reached the replica runs to success.
func TestRedisRunnersSurviveClusterFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Replicas: 1, NodeTimeout: 2 * time.Second})
	ctx := context.Background()
	var mu sync.Mutex
	ran := map[string]int{}
	node := func(name string) *Runner {
		rdb := cl.Client(t)
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: rdb, Prefix: "bp:", Logger: quiet})
		require.NoError(t, err)
		t.Cleanup(func() { bp.Close() })
		s := newRedisStore(t, rdb, "tasks:", storeConfig{})
		r := newRunner(t, s, Options{Backplane: bp, Node: name}, true)
		Handle(r, "work", func(ctx context.Context, j *Job[int]) error {
			mu.Lock()
			ran[j.ID]++
			mu.Unlock()
			return nil
		})
		startRun(t, r)
		return r
	}
	a, b := node("a"), node("b")
	var acked []string
	enqueue := func(r *Runner, i int) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		task, err := r.Enqueue(cctx, "work", i)
		if err == nil {
			acked = append(acked, task.ID)
		}
		return err
	}
	for i := range 20 {
		require.NoError(t, enqueue([]*Runner{a, b}[i%2], i))
	}
	victim := cl.Primary(t, "tasks:{default}")
	killed := time.Now()
	victim.Kill(t)
	fails, firstAfter := 0, time.Duration(0)
	for i := 20; len(acked) < 60; i++ {
		if err := enqueue([]*Runner{a, b}[i%2], i); err != nil {
			fails++
			require.Less(t, time.Since(killed), 30*time.Second, "enqueue never recovered: %v", err)
			time.Sleep(50 * time.Millisecond)
		} else if fails > 0 && firstAfter == 0 {
			firstAfter = time.Since(killed)
		}
	}
	// Every acknowledged task the new primary holds succeeds; one it lacks
	// was lost by asynchronous replication.
	lost := 0
	for _, id := range acked {
		for {
			task, err := a.Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				lost++
				break
			}
			if err == nil && task.State == Succeeded {
				break
			}
			require.Less(t, time.Since(killed), 45*time.Second, "task %s: %v, %v", id, task, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	mu.Lock()
	runs := len(ran)
	mu.Unlock()
	t.Logf("after the kill: enqueue failed %d times and worked again after %v; %d acknowledged tasks, %d ran, %d lost by Redis before replication",
		fails, firstAfter.Round(10*time.Millisecond), len(acked), runs, lost)
}
