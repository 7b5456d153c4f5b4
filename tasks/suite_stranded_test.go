package tasks

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// finishFails wraps a real store: Finish fails, without reaching the
// store, for the leases fail picks.
type finishFails struct {
	Store
	fail  func(*Lease) bool
	fails atomic.Int32
}

func (f *finishFails) Finish(ctx context.Context, l *Lease, o Outcome) error {
	if f.fail(l) {
		f.fails.Add(1)
		return errors.New("injected finish failure")
	}
	return f.Store.Finish(ctx, l, o)
}

// strandedCases are the conformance cases of tasks whose worker lost
// track of them while it lives.
func strandedCases(h harness) map[string]func(t *testing.T) {
	ctx := context.Background()
	return map[string]func(t *testing.T){
		"TaskWhoseFinishGaveUpIsHandedBack": func(t *testing.T) {
			const ttl = 400 * time.Millisecond
			store := &finishFails{Store: h.newStore(t, storeConfig{}), fail: func(l *Lease) bool {
				return l.Task.ID == "stranded" && l.Attempt == 1
			}}
			r := newRunner(t, store, Options{Concurrency: 2, LeaseTTL: ttl})
			// steady keeps running on the same worker and queue, so its
			// renewals keep the worker's leases alive meanwhile.
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			Handle(r, "steady", func(ctx context.Context, j *Job[struct{}]) error {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})
			var runs atomic.Int32
			Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error {
				runs.Add(1)
				return nil
			})
			steady, err := r.Enqueue(ctx, "steady", nil)
			require.NoError(t, err)
			waitState(t, r, steady.ID, Active, 5*time.Second)
			task, err := r.Enqueue(ctx, "job", nil, ID("stranded"))
			require.NoError(t, err)
			// The runner tries Finish 5 times over 2s, gives up, and stops
			// renewing the lease: the task is handed back a lease later.
			done := waitState(t, r, task.ID, Succeeded, 2*time.Second+ttl+time.Second+ttl/4+time.Second+h.slack)
			assert.Equal(t, 2, done.Attempt, "the lost attempt counts, as an expired lease's does")
			assert.Equal(t, int32(2), runs.Load())
			assert.Equal(t, int32(5), store.fails.Load())
			st, err := r.Get(ctx, steady.ID)
			require.NoError(t, err)
			assert.Equal(t, Active, st.State, "the worker's other task keeps its lease")
		},
		"TaskWhoseFinishGaveUpInAQuietQueueIsHandedBack": func(t *testing.T) {
			// Short tasks trickle in: the worker's claims keep its lease
			// alive, though it seldom runs a task when it renews.
			const ttl = 400 * time.Millisecond
			store := &finishFails{Store: h.newStore(t, storeConfig{}), fail: func(l *Lease) bool {
				return l.Task.ID == "stranded" && l.Attempt == 1
			}}
			r := newRunner(t, store, Options{LeaseTTL: ttl})
			Handle(r, "tick", func(ctx context.Context, j *Job[struct{}]) error { return nil })
			Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error { return nil })
			stop := make(chan struct{})
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				for {
					select {
					case <-stop:
						return
					case <-time.After(ttl / 4):
					}
					_, _ = r.Enqueue(ctx, "tick", nil)
				}
			}()
			t.Cleanup(func() { close(stop); <-fed })
			task, err := r.Enqueue(ctx, "job", nil, ID("stranded"))
			require.NoError(t, err)
			done := waitState(t, r, task.ID, Succeeded, 2*time.Second+ttl+time.Second+ttl/4+time.Second+h.slack)
			assert.Equal(t, 2, done.Attempt)
		},
	}
}
