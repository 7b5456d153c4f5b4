package tasks

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// idCases are the conformance cases of caller-chosen task IDs ([ID]).
func idCases(h harness) map[string]func(t *testing.T) {
	ctx := context.Background()
	return map[string]func(t *testing.T){
		"CallerChosenID": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			var runs atomic.Int32
			release := make(chan struct{})
			Handle(r, "receipt", func(ctx context.Context, j *Job[greet]) error {
				runs.Add(1)
				<-release
				return nil
			})
			a, err := r.Enqueue(ctx, "receipt", greet{"ada"}, ID("order-42-receipt"))
			require.NoError(t, err)
			assert.Equal(t, "order-42-receipt", a.ID)
			waitState(t, r, a.ID, Active, 5*time.Second)
			// Enqueued again, in any state, with any payload or options: refused,
			// and the task is left as it is.
			for _, opts := range [][]EnqueueOption{
				{ID("order-42-receipt")},
				{ID("order-42-receipt"), Delay(time.Hour)},
				{ID("order-42-receipt"), Unique("k", time.Hour)},
			} {
				_, err = r.Enqueue(ctx, "receipt", greet{"bob"}, opts...)
				var dup *DuplicateError
				require.ErrorAs(t, err, &dup)
				assert.ErrorIs(t, err, ErrDuplicate)
				assert.Equal(t, &DuplicateError{ID: "order-42-receipt"}, dup)
				assert.Equal(t, `tasks: duplicate task: a task with ID "order-42-receipt" exists`, err.Error())
			}
			got, err := r.Get(ctx, a.ID)
			require.NoError(t, err)
			assert.Equal(t, Active, got.State)
			assert.JSONEq(t, `{"name":"ada"}`, string(got.Payload))
			// The unique key of the refused enqueue was not taken.
			_, err = r.Enqueue(ctx, "receipt", nil, Unique("k", time.Hour), Delay(time.Hour))
			require.NoError(t, err)
			close(release)
			waitState(t, r, a.ID, Succeeded, 5*time.Second)
			_, err = r.Enqueue(ctx, "receipt", greet{"ada"}, ID("order-42-receipt"))
			require.ErrorIs(t, err, ErrDuplicate, "a final task still holds its ID")
			require.NoError(t, r.Delete(ctx, a.ID))
			_, err = r.Enqueue(ctx, "receipt", greet{"ada"}, ID("order-42-receipt"))
			require.NoError(t, err, "a deleted task's ID is free")
			waitState(t, r, a.ID, Succeeded, 5*time.Second)
			assert.Equal(t, int32(2), runs.Load())
		},
		"CallerChosenIDRacingEnqueues": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			// Concurrent enqueues of one ID (which the Redis store may send
			// in one batch): exactly one wins, whatever the options.
			for i, opts := range [][]EnqueueOption{nil, {Delay(time.Hour)}} {
				id := []string{"now", "later"}[i]
				var wg sync.WaitGroup
				var ok, dups atomic.Int32
				for range 20 {
					wg.Go(func() {
						_, err := r.Enqueue(ctx, "x", nil, append([]EnqueueOption{ID(id)}, opts...)...)
						switch {
						case err == nil:
							ok.Add(1)
						case assert.ErrorIs(t, err, ErrDuplicate):
							dups.Add(1)
						}
					})
				}
				wg.Wait()
				assert.Equal(t, int32(1), ok.Load(), id)
				assert.Equal(t, int32(19), dups.Load(), id)
			}
			c, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, c[DefaultQueue][Pending])
			assert.Equal(t, 1, c[DefaultQueue][Scheduled])
		},
		"BadCallerChosenID": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			for _, id := range []string{"", "has space", "{slot}", "a*", "a?", "a[1]", "tab\t", "nul\x00", string(make([]byte, 201))} {
				_, err := r.Enqueue(ctx, "x", nil, ID(id))
				assert.ErrorIs(t, err, ErrInvalid, "ID %q", id)
			}
			assert.Panics(t, func() { r.Periodic("p", Every(time.Hour), "x", nil, ID("fixed")) })
		},
	}
}
