package tasks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/internal/redistest"
)

// batchCases are the conformance cases of [Runner.EnqueueMany].
func batchCases(h harness) map[string]func(t *testing.T) {
	ctx := context.Background()
	return map[string]func(t *testing.T){
		"EnqueueManyDuplicates": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{Queues: map[string]int{"a": 1, "b": 1}})
			rec := record(t, r)
			ran := make(chan string, 16)
			Handle(r, "work", func(ctx context.Context, j *Job[string]) error {
				ran <- j.Payload
				return nil
			})
			_, err := r.Enqueue(ctx, "work", "old", ID("old"), Queue("a"), Delay(time.Hour))
			require.NoError(t, err)
			_, err = r.Enqueue(ctx, "work", "held", Unique("k1", time.Hour), Queue("a"), Delay(time.Hour))
			require.NoError(t, err)
			res, err := r.EnqueueMany(ctx, []NewTask{
				{Type: "work", Payload: "p1", Options: []EnqueueOption{Queue("a")}},
				{Type: "work", Payload: "dup-id", Options: []EnqueueOption{Queue("a"), ID("old")}},
				{Type: "work", Payload: "p2", Options: []EnqueueOption{Queue("b"), ID("new")}},
				{Type: "work", Payload: "dup-new", Options: []EnqueueOption{Queue("b"), ID("new")}},
				{Type: "work", Payload: "dup-key", Options: []EnqueueOption{Queue("a"), Unique("k1", time.Hour)}},
				{Type: "work", Payload: "p3", Options: []EnqueueOption{Queue("b"), Unique("k2", time.Hour)}},
				{Type: "work", Payload: "dup-k2", Options: []EnqueueOption{Queue("b"), Unique("k2", time.Hour)}},
				{Type: "work", Payload: "later", Options: []EnqueueOption{Queue("a"), Delay(time.Hour)}},
			})
			require.NoError(t, err)
			require.Len(t, res, 8)
			dupOf := func(i int) *DuplicateError {
				t.Helper()
				var d *DuplicateError
				require.ErrorAs(t, res[i].Err, &d, "task %d", i)
				assert.Nil(t, res[i].Task)
				return d
			}
			assert.Equal(t, &DuplicateError{ID: "old"}, dupOf(1))
			assert.Equal(t, &DuplicateError{ID: "new"}, dupOf(3))
			assert.Equal(t, "k1", dupOf(4).Key)
			assert.Equal(t, "k2", dupOf(6).Key)
			assert.Equal(t, res[5].Task.ID, dupOf(6).ID)
			for _, i := range []int{0, 2, 5, 7} {
				require.NoError(t, res[i].Err, "task %d", i)
				require.NotNil(t, res[i].Task)
				assert.False(t, res[i].Task.EnqueuedAt.IsZero())
			}
			assert.Equal(t, "new", res[2].Task.ID)
			assert.Equal(t, Scheduled, res[7].Task.State)
			got := map[string]bool{}
			for range 3 {
				got[<-ran] = true
			}
			assert.Equal(t, map[string]bool{"p1": true, "p2": true, "p3": true}, got)
			for _, i := range []int{0, 2, 5} {
				waitState(t, r, res[i].Task.ID, Succeeded, 5*time.Second)
				eventually(t, time.Second, func() bool { return len(rec.kinds(res[i].Task.ID)) == 3 }, "events")
				assert.Equal(t, EventEnqueued, rec.kinds(res[i].Task.ID)[0])
			}
		},
		"EnqueueManyAllOrNothing": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			batch := []NewTask{{Type: "work", Payload: 1}, {Type: "work", Payload: 2}, {Type: "bad type"}, {Type: "work"}}
			_, err := r.EnqueueMany(ctx, batch)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.ErrorContains(t, err, "task 2")
			batch[2] = NewTask{Type: "work", Options: []EnqueueOption{MaxAttempts(0)}}
			_, err = r.EnqueueMany(ctx, batch)
			assert.ErrorIs(t, err, ErrInvalid)
			_, err = r.EnqueueMany(ctx, make([]NewTask, MaxBatch+1))
			assert.ErrorIs(t, err, ErrInvalid)
			counts, err := r.Counts(ctx)
			require.NoError(t, err)
			total := 0
			for _, m := range counts {
				for _, n := range m {
					total += n
				}
			}
			assert.Zero(t, total)
			res, err := r.EnqueueMany(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, res)
		},
		"EnqueueManyLarge": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			batch := make([]NewTask, 5000)
			for i := range batch {
				batch[i] = NewTask{Type: "work", Payload: i, Options: []EnqueueOption{Queue(fmt.Sprint("q", i%3))}}
			}
			res, err := r.EnqueueMany(ctx, batch)
			require.NoError(t, err)
			for i, x := range res {
				require.NoError(t, x.Err)
				assert.True(t, strings.HasSuffix(string(x.Task.Payload), fmt.Sprint(i)))
			}
			counts, err := r.Counts(ctx)
			require.NoError(t, err)
			for q := range 3 {
				assert.Equal(t, []int{1667, 1667, 1666}[q], counts[fmt.Sprint("q", q)][Pending])
			}
		},
	}
}

// TestRedisEnqueueManyRefusedByRedis: a batch that Redis refuses (here,
// over its memory limit) enqueues nothing, in one queue or several.
func TestRedisEnqueueManyRefusedByRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis server")
	}
	t.Parallel()
	srv := redistest.StartServer(t)
	c := srv.Client(t)
	ctx := context.Background()
	store := newRedisStore(t, c, "b:", storeConfig{})
	r := newRunner(t, store, Options{}, true)
	_, err := r.EnqueueMany(ctx, []NewTask{{Type: "w", Options: []EnqueueOption{Queue("x")}}, {Type: "w", Options: []EnqueueOption{Queue("y")}}})
	require.NoError(t, err) // the queues are registered
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "1").Err())
	defer c.ConfigSet(ctx, "maxmemory", "0")
	for _, queues := range [][]string{{"x"}, {"x", "y"}} {
		var batch []NewTask
		for i := range 10 {
			batch = append(batch, NewTask{Type: "w", Payload: i, Options: []EnqueueOption{Queue(queues[i%len(queues)])}})
		}
		_, err := r.EnqueueMany(ctx, batch)
		assert.ErrorContains(t, err, "OOM")
	}
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "0").Err())
	counts, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, counts["x"][Pending])
	assert.Equal(t, 1, counts["y"][Pending])
}
