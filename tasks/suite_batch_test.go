package tasks

import (
	"context"
	"encoding/json"
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
			assert.Zero(t, total(t, r))
			res, err := r.EnqueueMany(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, res)
		},
		"EnqueueManyChunks": func(t *testing.T) {
			// A batch spanning several allocation chunks (batchChunk tasks,
			// payloadChunk bytes of payloads): each task keeps its own ID
			// and payload, and the IDs run on from the Enqueue before.
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			before, err := r.Enqueue(ctx, "work", nil)
			require.NoError(t, err)
			big := strings.Repeat("<&>", payloadChunk)
			payloads := []any{nil, struct{}{}, json.RawMessage(`{"raw":true}`), "<a href='x'>&</a>", big, 7, greet{"ada"}, map[string]string{"b": "2", "a": "1"}}
			n := 3*batchChunk + 3
			batch := make([]NewTask, n)
			for i := range batch {
				batch[i] = NewTask{Type: "work", Payload: payloads[i%len(payloads)]}
			}
			batch[n/2].Options = []EnqueueOption{ID("mid")}
			batch[n/2+1].Options = []EnqueueOption{ID("mid")} // a duplicate in the middle
			res, err := r.EnqueueMany(ctx, batch)
			require.NoError(t, err)
			after, err := r.Enqueue(ctx, "work", nil)
			require.NoError(t, err)
			prev := before.ID
			for i, x := range res {
				if i == n/2+1 {
					assert.Equal(t, &DuplicateError{ID: "mid"}, x.Err)
					continue
				}
				require.NoError(t, x.Err, "task %d", i)
				want, err := json.Marshal(batch[i].Payload)
				require.NoError(t, err)
				assert.Equal(t, string(want), string(x.Task.Payload), "task %d", i)
				assert.Equal(t, len(x.Task.Payload), cap(x.Task.Payload), "task %d: payload capped", i)
				got, err := r.Get(ctx, x.Task.ID)
				require.NoError(t, err)
				assert.Equal(t, string(want), string(got.Payload), "task %d stored", i)
				if i == n/2 {
					continue
				}
				_, ok := uuidV7(x.Task.ID)
				assert.True(t, ok, "task %d: ID %q", i, x.Task.ID)
				assert.Greater(t, x.Task.ID, prev, "task %d", i)
				prev = x.Task.ID
			}
			assert.Greater(t, after.ID, prev)
			_ = append(res[0].Task.Payload, "xx"...)
			assert.Equal(t, "{}", string(res[1].Task.Payload), "appending to a payload leaves the next alone")
			assert.Equal(t, n-1+2, total(t, r))
			// All or nothing across chunks: a bad payload in the middle of
			// a batch leaves nothing enqueued.
			for _, bad := range []any{make(chan int), json.RawMessage("{"), strings.Repeat("x", 1<<20)} {
				batch[n/2+1] = NewTask{Type: "work", Payload: bad}
				_, err = r.EnqueueMany(ctx, batch)
				assert.ErrorIs(t, err, ErrInvalid)
				assert.ErrorContains(t, err, fmt.Sprintf("task %d", n/2+1))
				assert.Equal(t, n-1+2, total(t, r))
			}
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

// total returns the number of tasks in r's store.
func total(t *testing.T, r *Runner) int {
	t.Helper()
	counts, err := r.Counts(context.Background())
	require.NoError(t, err)
	n := 0
	for _, m := range counts {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// TestPayloadEncoder: a batch's payloads, encoded into shared buffers, are
// what json.Marshal makes, each in its own capped slice, and a value that
// fails to encode leaves nothing behind.
func TestPayloadEncoder(t *testing.T) {
	t.Parallel()
	p := newPayloadEncoder()
	values := []any{"<script>&</script>", strings.Repeat("é", payloadChunk), 1.5, map[string]any{"z": nil, "a": []int{1}}, "\u2028\xff"}
	var got [][]byte
	for i := range 50 {
		v := values[i%len(values)]
		if i%7 == 3 {
			_, err := p.encode(func() {})
			require.Error(t, err)
		}
		b, err := p.encode(v)
		require.NoError(t, err)
		got = append(got, b)
	}
	for i, b := range got {
		want, err := json.Marshal(values[i%len(values)])
		require.NoError(t, err)
		assert.Equal(t, string(want), string(b), "value %d", i)
		assert.Equal(t, len(b), cap(b), "value %d", i)
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
