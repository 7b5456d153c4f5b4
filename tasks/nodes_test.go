package tasks

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPeriodicClockSkew runs three runners whose clocks disagree by up to
// 400ms on one store: each tick still fires exactly once.
func TestPeriodicClockSkew(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore(MemoryOptions{})
		var runs atomic.Int32
		var runners []*Runner
		for i, skew := range []time.Duration{-400 * time.Millisecond, 0, 250 * time.Millisecond} {
			r := newRunner(t, store, Options{Node: fmt.Sprint("node", i)}, true)
			r.skew = skew
			Handle(r, "tick", func(ctx context.Context, j *Job[struct{}]) error { runs.Add(1); return nil })
			r.Periodic("every-second", Every(time.Second), "tick", nil)
			runners = append(runners, r)
		}
		// Start half a second after a tick; run for 10 ticks.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
		var stops []func()
		for _, r := range runners {
			stops = append(stops, startRun(t, r))
		}
		time.Sleep(5200 * time.Millisecond)
		// A node that restarts doesn't refire the tick it just saw.
		stops[1]()
		stops[1] = startRun(t, runners[1])
		time.Sleep(4800 * time.Millisecond)
		for _, stop := range stops {
			stop()
		}
		synctest.Wait()
		assert.Equal(t, int32(10), runs.Load(), "10 ticks, 10 runs")
	})
}

// TestRedisCancelAndEventsAcrossNodes runs a task on one node and cancels
// it from another; the other node sees every event.
func TestRedisCancelAndEventsAcrossNodes(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	node := func(name string) *Runner {
		rdb := db.Client(t)
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: rdb, Prefix: db.Prefix + "bp:", Logger: quiet})
		require.NoError(t, err)
		t.Cleanup(func() { bp.Close() })
		s := newRedisStore(t, rdb, db.Prefix+"tasks:", storeConfig{})
		// A long lease: the cancellation must come over the backplane,
		// not at the next renewal.
		return newRunner(t, s, Options{Backplane: bp, Node: name, LeaseTTL: time.Minute}, true)
	}
	a, b := node("a"), node("b")
	running := make(chan struct{})
	stopped := make(chan time.Time, 1)
	Handle(a, "long", func(ctx context.Context, j *Job[struct{}]) error {
		close(running)
		<-ctx.Done()
		stopped <- time.Now()
		return ctx.Err()
	})
	recB := record(t, b)
	startRun(t, a)
	task, err := b.Enqueue(ctx, "long", nil)
	require.NoError(t, err)
	<-running
	t0 := time.Now()
	_, err = b.Cancel(ctx, task.ID)
	require.NoError(t, err)
	select {
	case at := <-stopped:
		assert.Less(t, at.Sub(t0), 5*time.Second, "cancelled over the backplane, not at lease renewal (15s)")
	case <-time.After(10 * time.Second):
		t.Fatal("the running task was not cancelled on its node")
	}
	waitState(t, b, task.ID, Cancelled, 5*time.Second)
	eventually(t, 5*time.Second, func() bool { return len(recB.kinds(task.ID)) == 3 }, "node b sees node a's events")
	assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventCancelled}, recB.kinds(task.ID))
}
