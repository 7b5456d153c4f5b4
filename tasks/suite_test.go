package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// storeConfig is what a case may ask of its store.
type storeConfig struct {
	retention time.Duration
	keep      int
}

// harness runs the conformance suite on one kind of store.
type harness struct {
	newStore func(t *testing.T, c storeConfig) Store
	// run runs a case: inside a synctest bubble for the memory store.
	run func(t *testing.T, f func(t *testing.T))
	// slack is how late a timed event may be (0 in a bubble).
	slack time.Duration
}

func TestMemoryStoreSuite(t *testing.T) {
	t.Parallel()
	runSuite(t, harness{
		newStore: func(t *testing.T, c storeConfig) Store {
			return NewMemoryStore(MemoryOptions{Retention: c.retention, RetentionCount: c.keep})
		},
		run: func(t *testing.T, f func(t *testing.T)) { synctest.Test(t, f) },
	})
}

func TestRedisStoreSuite(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var n atomic.Int64
	runSuite(t, harness{
		newStore: func(t *testing.T, c storeConfig) Store {
			return newRedisStore(t, db.Client(t), fmt.Sprintf("%s%d:", db.Prefix, n.Add(1)), c)
		},
		run:   func(t *testing.T, f func(t *testing.T)) { f(t) },
		slack: 300 * time.Millisecond,
	})
}

func TestRedisClusterStoreSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	t.Parallel()
	cl := redistest.StartCluster(t)
	var n atomic.Int64
	runSuite(t, harness{
		newStore: func(t *testing.T, c storeConfig) Store {
			return newRedisStore(t, cl.Client(t), fmt.Sprintf("c%d:", n.Add(1)), c)
		},
		run:   func(t *testing.T, f func(t *testing.T)) { f(t) },
		slack: 300 * time.Millisecond,
	})
}

func newRedisStore(t *testing.T, client redis.UniversalClient, prefix string, c storeConfig) *RedisStore {
	t.Helper()
	s, err := NewRedisStore(RedisOptions{Client: client, Prefix: prefix, Retention: c.retention, RetentionCount: c.keep, ReconcileEvery: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

var quiet = slog.New(slog.DiscardHandler)

// newRunner returns a runner on store with fast leases, and starts it
// unless noRun; the cleanup stops it and waits for Run to return.
func newRunner(t *testing.T, store Store, o Options, noRun ...bool) *Runner {
	t.Helper()
	o.Store = store
	if o.Logger == nil {
		o.Logger = quiet
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	r := NewRunner(o)
	if len(noRun) == 0 {
		startRun(t, r)
	}
	return r
}

func startRun(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder collects a runner's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func record(t *testing.T, r *Runner) *recorder {
	t.Helper()
	rec := &recorder{}
	sub, err := r.Subscribe(context.Background(), func(e Event) {
		rec.mu.Lock()
		rec.events = append(rec.events, e)
		rec.mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(func() { sub.Close() })
	return rec
}

// kinds returns the kinds of the task's events, in order, except that
// "enqueued" goes first: the enqueuing goroutine publishes it after the
// store accepted the task, so a worker's events may overtake it (as
// documented on Event).
func (rec *recorder) kinds(id string) []EventKind {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []EventKind
	for _, e := range rec.events {
		if e.TaskID == id {
			out = append(out, e.Kind)
		}
	}
	if i := slices.Index(out, EventEnqueued); i > 0 {
		out = append([]EventKind{EventEnqueued}, slices.Delete(out, i, i+1)...)
	}
	return out
}

func waitState(t *testing.T, r *Runner, id string, st State, d time.Duration) *Task {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		task, err := r.Get(context.Background(), id)
		if err == nil && task.State == st {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never reached %s in %v: last %+v, error %v", id, st, d, task, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type greet struct {
	Name string `json:"name"`
}

func runSuite(t *testing.T, h harness) {
	ctx := context.Background()
	cases := map[string]func(t *testing.T){
		"RunsTypedPayload": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			rec := record(t, r)
			got := make(chan string, 1)
			Handle(r, "greet", func(ctx context.Context, j *Job[greet]) error {
				got <- j.Payload.Name
				return nil
			})
			task, err := r.Enqueue(ctx, "greet", greet{"ada"})
			require.NoError(t, err)
			assert.Equal(t, Pending, task.State)
			assert.Equal(t, "ada", <-got)
			done := waitState(t, r, task.ID, Succeeded, 5*time.Second)
			assert.Equal(t, 1, done.Attempt)
			assert.JSONEq(t, `{"name":"ada"}`, string(done.Payload))
			assert.False(t, done.FinishedAt.IsZero())
			eventually(t, time.Second, func() bool { return len(rec.kinds(task.ID)) == 3 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventSucceeded}, rec.kinds(task.ID))
		},
		"RetriesWithBackoff": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			rec := record(t, r)
			var mu sync.Mutex
			var starts []time.Time
			Handle(r, "flaky", func(ctx context.Context, j *Job[struct{}]) error {
				mu.Lock()
				defer mu.Unlock()
				starts = append(starts, time.Now())
				if j.Attempt < 3 {
					return errors.New("boom")
				}
				return nil
			})
			task, err := r.Enqueue(ctx, "flaky", nil, WithBackoff(Backoff{Initial: 200 * time.Millisecond, Factor: 2}))
			require.NoError(t, err)
			done := waitState(t, r, task.ID, Succeeded, 10*time.Second)
			assert.Equal(t, 3, done.Attempt)
			assert.Equal(t, "boom", done.LastError)
			mu.Lock()
			require.Len(t, starts, 3)
			gap1, gap2 := starts[1].Sub(starts[0]), starts[2].Sub(starts[1])
			mu.Unlock()
			assert.GreaterOrEqual(t, gap1, 200*time.Millisecond-5*time.Millisecond)
			assert.LessOrEqual(t, gap1, 200*time.Millisecond+h.slack)
			assert.GreaterOrEqual(t, gap2, 400*time.Millisecond-5*time.Millisecond)
			assert.LessOrEqual(t, gap2, 400*time.Millisecond+h.slack)
			eventually(t, time.Second, func() bool { return len(rec.kinds(task.ID)) == 7 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventRetrying, EventStarted, EventRetrying, EventStarted, EventSucceeded}, rec.kinds(task.ID))
		},
		"SkipRetryAndDead": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			rec := record(t, r)
			Handle(r, "fatal", func(ctx context.Context, j *Job[struct{}]) error { return SkipRetry(errors.New("bad input")) })
			Handle(r, "fails", func(ctx context.Context, j *Job[struct{}]) error { return errors.New("nope") })
			a, err := r.Enqueue(ctx, "fatal", nil)
			require.NoError(t, err)
			b, err := r.Enqueue(ctx, "fails", nil, MaxAttempts(2), WithBackoff(Backoff{Initial: 10 * time.Millisecond}))
			require.NoError(t, err)
			da := waitState(t, r, a.ID, Dead, 5*time.Second)
			assert.Equal(t, 1, da.Attempt)
			assert.Contains(t, da.LastError, "bad input")
			db := waitState(t, r, b.ID, Dead, 5*time.Second)
			assert.Equal(t, 2, db.Attempt)
			eventually(t, time.Second, func() bool { return len(rec.kinds(b.ID)) == 5 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventFailed}, rec.kinds(a.ID))
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventRetrying, EventStarted, EventDead}, rec.kinds(b.ID))
		},
		"RetryAfterAndPanic": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			var starts sync.Map
			Handle(r, "limited", func(ctx context.Context, j *Job[struct{}]) error {
				starts.Store(j.Attempt, time.Now())
				if j.Attempt == 1 {
					return RetryAfter(time.Second, errors.New("429"))
				}
				return nil
			})
			Handle(r, "panics", func(ctx context.Context, j *Job[struct{}]) error {
				if j.Attempt == 1 {
					panic("kaboom")
				}
				return nil
			})
			a, err := r.Enqueue(ctx, "limited", nil)
			require.NoError(t, err)
			b, err := r.Enqueue(ctx, "panics", nil, WithBackoff(Backoff{Initial: 10 * time.Millisecond}))
			require.NoError(t, err)
			waitState(t, r, a.ID, Succeeded, 5*time.Second)
			s1, _ := starts.Load(1)
			s2, _ := starts.Load(2)
			gap := s2.(time.Time).Sub(s1.(time.Time))
			assert.GreaterOrEqual(t, gap, time.Second-5*time.Millisecond)
			assert.LessOrEqual(t, gap, time.Second+h.slack)
			done := waitState(t, r, b.ID, Succeeded, 5*time.Second)
			assert.Contains(t, done.LastError, "kaboom")
		},
		"Timeout": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			Handle(r, "slow", func(ctx context.Context, j *Job[struct{}]) error {
				if j.Attempt == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			})
			task, err := r.Enqueue(ctx, "slow", nil, Timeout(300*time.Millisecond), WithBackoff(Backoff{Initial: 10 * time.Millisecond}))
			require.NoError(t, err)
			done := waitState(t, r, task.ID, Succeeded, 5*time.Second)
			assert.Equal(t, 2, done.Attempt)
			assert.Contains(t, done.LastError, "timed out")
		},
		"DelayAndRunAt": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			started := make(chan time.Time, 2)
			Handle(r, "later", func(ctx context.Context, j *Job[struct{}]) error {
				started <- time.Now()
				return nil
			})
			t0 := time.Now()
			a, err := r.Enqueue(ctx, "later", nil, Delay(700*time.Millisecond))
			require.NoError(t, err)
			assert.Equal(t, Scheduled, a.State)
			got, err := r.Get(ctx, a.ID)
			require.NoError(t, err)
			assert.Equal(t, Scheduled, got.State)
			s := <-started
			assert.GreaterOrEqual(t, s.Sub(t0), 700*time.Millisecond-5*time.Millisecond)
			assert.LessOrEqual(t, s.Sub(t0), 700*time.Millisecond+h.slack)
			b, err := r.Enqueue(ctx, "later", nil, RunAt(time.Now().Add(-time.Minute)))
			require.NoError(t, err)
			assert.Equal(t, Pending, b.State)
			<-started
		},
		"Unique": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			release := make(chan struct{})
			Handle(r, "once", func(ctx context.Context, j *Job[struct{}]) error {
				<-release
				return nil
			})
			a, err := r.Enqueue(ctx, "once", nil, Unique("report:42", time.Hour))
			require.NoError(t, err)
			_, err = r.Enqueue(ctx, "once", nil, Unique("report:42", time.Hour))
			var dup *DuplicateError
			require.ErrorAs(t, err, &dup)
			assert.ErrorIs(t, err, ErrDuplicate)
			assert.Equal(t, a.ID, dup.ID)
			// Another queue has its own keys.
			_, err = r.Enqueue(ctx, "once", nil, Unique("report:42", time.Hour), Queue("other"))
			require.NoError(t, err)
			close(release)
			waitState(t, r, a.ID, Succeeded, 5*time.Second)
			_, err = r.Enqueue(ctx, "once", nil, Unique("report:42", time.Hour))
			require.NoError(t, err, "a finished task releases its key")
			// A key also lapses after its ttl.
			_, err = r.Enqueue(ctx, "once", nil, Unique("ttl", 300*time.Millisecond), Delay(time.Hour))
			require.NoError(t, err)
			_, err = r.Enqueue(ctx, "once", nil, Unique("ttl", 300*time.Millisecond), Delay(time.Hour))
			require.ErrorIs(t, err, ErrDuplicate)
			time.Sleep(400 * time.Millisecond)
			_, err = r.Enqueue(ctx, "once", nil, Unique("ttl", 300*time.Millisecond), Delay(time.Hour))
			require.NoError(t, err)
		},
		"Cancel": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			rec := record(t, r)
			running := make(chan struct{})
			Handle(r, "long", func(ctx context.Context, j *Job[struct{}]) error {
				close(running)
				<-ctx.Done()
				return ctx.Err()
			})
			waiting, err := r.Enqueue(ctx, "long", nil, Delay(time.Hour))
			require.NoError(t, err)
			c, err := r.Cancel(ctx, waiting.ID)
			require.NoError(t, err)
			assert.Equal(t, Cancelled, c.State)
			active, err := r.Enqueue(ctx, "long", nil)
			require.NoError(t, err)
			<-running
			c, err = r.Cancel(ctx, active.ID)
			require.NoError(t, err)
			assert.Equal(t, Active, c.State)
			assert.True(t, c.CancelRequested)
			waitState(t, r, active.ID, Cancelled, 5*time.Second)
			eventually(t, time.Second, func() bool { return len(rec.kinds(active.ID)) == 3 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventCancelled}, rec.kinds(active.ID))
			_, err = r.Cancel(ctx, active.ID)
			assert.ErrorIs(t, err, ErrBadState)
			_, err = r.Cancel(ctx, "no-such-task")
			assert.ErrorIs(t, err, ErrNotFound)
		},
		"RetryAndDelete": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			var fail atomic.Bool
			fail.Store(true)
			Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error {
				if fail.Load() {
					return errors.New("down")
				}
				return nil
			})
			task, err := r.Enqueue(ctx, "job", nil, MaxAttempts(1))
			require.NoError(t, err)
			waitState(t, r, task.ID, Dead, 5*time.Second)
			fail.Store(false)
			again, err := r.Retry(ctx, task.ID)
			require.NoError(t, err)
			assert.Equal(t, Pending, again.State)
			done := waitState(t, r, task.ID, Succeeded, 5*time.Second)
			assert.Equal(t, 1, done.Attempt)
			_, err = r.Retry(ctx, task.ID)
			assert.ErrorIs(t, err, ErrBadState)
			require.NoError(t, r.Delete(ctx, task.ID))
			_, err = r.Get(ctx, task.ID)
			assert.ErrorIs(t, err, ErrNotFound)
			assert.ErrorIs(t, r.Delete(ctx, task.ID), ErrNotFound)
		},
		"ListAndCounts": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			var ids []string
			for i := range 7 {
				task, err := r.Enqueue(ctx, "x", i)
				require.NoError(t, err)
				ids = append(ids, task.ID)
			}
			_, err := r.Enqueue(ctx, "x", 0, Delay(time.Hour), Queue("mail"))
			require.NoError(t, err)
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, 4)
				p, err := r.List(ctx, ListOptions{State: Pending, Limit: 3, Cursor: cursor})
				require.NoError(t, err)
				for _, task := range p.Tasks {
					got = append(got, task.ID)
				}
				if cursor = p.Next; cursor == "" {
					break
				}
			}
			assert.Equal(t, ids, got)
			counts, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 7, counts[DefaultQueue][Pending])
			assert.Equal(t, 1, counts["mail"][Scheduled])
			assert.Equal(t, 0, counts["mail"][Pending])
			p, err := r.List(ctx, ListOptions{Queue: "mail", State: Scheduled})
			require.NoError(t, err)
			require.Len(t, p.Tasks, 1)
			assert.Equal(t, "mail", p.Tasks[0].Queue)
			_, err = r.List(ctx, ListOptions{State: "bogus"})
			assert.ErrorIs(t, err, ErrInvalid)
		},
		"Retention": func(t *testing.T) {
			store := h.newStore(t, storeConfig{retention: 2 * time.Second, keep: 3})
			r := newRunner(t, store, Options{})
			Handle(r, "noop", func(ctx context.Context, j *Job[int]) error { return nil })
			var last *Task
			for i := range 5 {
				task, err := r.Enqueue(ctx, "noop", i)
				require.NoError(t, err)
				waitState(t, r, task.ID, Succeeded, 5*time.Second)
				last = task
			}
			counts, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 3, counts[DefaultQueue][Succeeded], "RetentionCount bounds the kept tasks")
			p, err := r.List(ctx, ListOptions{State: Succeeded})
			require.NoError(t, err)
			require.Len(t, p.Tasks, 3)
			assert.Equal(t, last.ID, p.Tasks[0].ID, "newest first")
			eventually(t, 5*time.Second, func() bool {
				counts, err := r.Counts(ctx)
				return err == nil && counts[DefaultQueue][Succeeded] == 0
			}, "Retention drops old tasks")
			_, err = r.Get(ctx, last.ID)
			assert.ErrorIs(t, err, ErrNotFound)
		},
		"ProgressAndInspection": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{})
			rec := record(t, r)
			step := make(chan struct{})
			Handle(r, "import", func(ctx context.Context, j *Job[struct{}]) error {
				if err := j.Progress(ctx, map[string]int{"done": 50}); err != nil {
					return err
				}
				<-step
				return nil
			})
			task, err := r.Enqueue(ctx, "import", nil)
			require.NoError(t, err)
			eventually(t, 5*time.Second, func() bool {
				got, err := r.Get(ctx, task.ID)
				return err == nil && string(got.Progress) == `{"done":50}`
			}, "progress stored")
			got, _ := r.Get(ctx, task.ID)
			assert.Equal(t, Active, got.State)
			assert.Equal(t, r.Node(), got.Worker)
			p, err := r.List(ctx, ListOptions{State: Active})
			require.NoError(t, err)
			require.Len(t, p.Tasks, 1)
			assert.ErrorIs(t, r.Delete(ctx, task.ID), ErrBadState)
			close(step)
			waitState(t, r, task.ID, Succeeded, 5*time.Second)
			eventually(t, time.Second, func() bool { return len(rec.kinds(task.ID)) == 4 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventProgress, EventSucceeded}, rec.kinds(task.ID))
		},
		"StrictPriority": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			r := newRunner(t, store, Options{Concurrency: 1, StrictPriority: true, Queues: map[string]int{"high": 10, "low": 1}}, true)
			var mu sync.Mutex
			var order []string
			Handle(r, "p", func(ctx context.Context, j *Job[struct{}]) error {
				mu.Lock()
				order = append(order, j.Queue)
				mu.Unlock()
				return nil
			})
			for range 5 {
				_, err := r.Enqueue(ctx, "p", nil, Queue("low"))
				require.NoError(t, err)
				_, err = r.Enqueue(ctx, "p", nil, Queue("high"))
				require.NoError(t, err)
			}
			startRun(t, r)
			eventually(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 10 }, "all ran")
			assert.Equal(t, []string{"high", "high", "high", "high", "high", "low", "low", "low", "low", "low"}, order)
		},
		"WeightedQueues": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			r := newRunner(t, store, Options{Concurrency: 1, Queues: map[string]int{"a": 3, "b": 1}}, true)
			var mu sync.Mutex
			var order []string
			Handle(r, "w", func(ctx context.Context, j *Job[struct{}]) error {
				mu.Lock()
				order = append(order, j.Queue)
				mu.Unlock()
				return nil
			})
			for range 100 {
				_, err := r.Enqueue(ctx, "w", nil, Queue("a"))
				require.NoError(t, err)
				_, err = r.Enqueue(ctx, "w", nil, Queue("b"))
				require.NoError(t, err)
			}
			startRun(t, r)
			eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) >= 80 }, "ran")
			mu.Lock()
			a := 0
			for _, q := range order[:80] {
				if q == "a" {
					a++
				}
			}
			mu.Unlock()
			// Weight 3:1 → "a" gets about 60 of the first 80; both get some.
			assert.Greater(t, a, 45)
			assert.Less(t, a, 78)
		},
		"PeriodicOncePerTickAcrossRunners": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			var runs atomic.Int32
			var runners []*Runner
			var stops []func()
			for range 3 {
				r := newRunner(t, store, Options{}, true)
				Handle(r, "tick", func(ctx context.Context, j *Job[struct{}]) error { runs.Add(1); return nil })
				r.Periodic("heartbeat", Every(time.Second), "tick", nil)
				runners = append(runners, r)
			}
			// Align to just after a tick so that exactly 3 ticks fall in the window.
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
			for _, r := range runners {
				stops = append(stops, startRun(t, r))
			}
			time.Sleep(3 * time.Second)
			for _, stop := range stops {
				stop()
			}
			counts, err := runners[0].Counts(ctx)
			require.NoError(t, err)
			c := counts[DefaultQueue]
			assert.Equal(t, 3, c[Succeeded]+c[Pending]+c[Active], "3 ticks enqueue 3 tasks across 3 runners")
			assert.LessOrEqual(t, int(runs.Load()), 3)
			p, err := runners[0].List(ctx, ListOptions{State: Succeeded})
			require.NoError(t, err)
			for _, task := range p.Tasks {
				assert.Equal(t, "heartbeat", task.Periodic)
			}
		},
		"ShutdownDrainsAndHandsBack": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			r := newRunner(t, store, Options{ShutdownTimeout: time.Second}, true)
			rec := record(t, r)
			started := make(chan string, 2)
			Handle(r, "quick", func(ctx context.Context, j *Job[struct{}]) error {
				started <- j.ID
				time.Sleep(300 * time.Millisecond)
				return nil
			})
			Handle(r, "stubborn", func(ctx context.Context, j *Job[struct{}]) error {
				started <- j.ID
				<-ctx.Done()
				return ctx.Err()
			})
			quick, err := r.Enqueue(ctx, "quick", nil)
			require.NoError(t, err)
			stubborn, err := r.Enqueue(ctx, "stubborn", nil)
			require.NoError(t, err)
			stop := startRun(t, r)
			<-started
			<-started
			t0 := time.Now()
			stop()
			assert.GreaterOrEqual(t, time.Since(t0), time.Second-5*time.Millisecond, "the stubborn task got the whole budget")
			got, err := r.Get(ctx, quick.ID)
			require.NoError(t, err)
			assert.Equal(t, Succeeded, got.State)
			got, err = r.Get(ctx, stubborn.ID)
			require.NoError(t, err)
			assert.Equal(t, Pending, got.State)
			assert.Equal(t, 0, got.Attempt, "an interrupted attempt doesn't count")
			eventually(t, time.Second, func() bool { return len(rec.kinds(stubborn.ID)) == 3 }, "events")
			assert.Equal(t, []EventKind{EventEnqueued, EventStarted, EventInterrupted}, rec.kinds(stubborn.ID))
			// The next runner finishes it.
			r2 := newRunner(t, store, Options{})
			Handle(r2, "stubborn", func(ctx context.Context, j *Job[struct{}]) error { return nil })
			waitState(t, r2, stubborn.ID, Succeeded, 5*time.Second)
		},
		"ExpiredLeaseIsTakenOverAndFenced": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			r := newRunner(t, store, Options{}, true)
			task, err := r.Enqueue(ctx, "job", nil)
			require.NoError(t, err)
			// A worker that claims and then dies.
			leases, err := store.Claim(ctx, "dead-node", []string{DefaultQueue}, 10, time.Second)
			require.NoError(t, err)
			require.Len(t, leases, 1)
			l := leases[0]
			assert.Equal(t, task.ID, l.Task.ID)
			assert.Equal(t, "job", l.Task.Type)
			assert.JSONEq(t, "null", string(l.Task.Payload))
			assert.Equal(t, task.MaxAttempts, l.Task.MaxAttempts)
			assert.Equal(t, 1, l.Attempt)
			assert.Equal(t, "dead-node", l.Worker)
			assert.WithinDuration(t, time.Now(), l.StartedAt, time.Second)
			ran := make(chan int, 1)
			Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error { ran <- j.Attempt; return nil })
			t0 := time.Now()
			startRun(t, r)
			assert.Equal(t, 2, <-ran, "the lost attempt counts")
			assert.LessOrEqual(t, time.Since(t0), 2*time.Second+h.slack, "taken over within lease + maintenance period")
			waitState(t, r, task.ID, Succeeded, 5*time.Second)
			// The dead worker's late report is refused.
			assert.ErrorIs(t, store.Finish(ctx, leases[0], Outcome{State: Succeeded}), ErrLeaseLost)
			assert.ErrorIs(t, store.Progress(ctx, leases[0], []byte("1")), ErrLeaseLost)
			lost, _, err := store.Renew(ctx, leases, time.Second)
			require.NoError(t, err)
			assert.Equal(t, []string{task.ID}, lost)
		},
		"HandlerIgnoringItsContextLosesTheTask": func(t *testing.T) {
			// steady keeps the worker's leases renewed, so the stuck task
			// can't just expire with them.
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{Concurrency: 3, LeaseTTL: 400 * time.Millisecond})
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			Handle(r, "stuck", func(ctx context.Context, j *Job[struct{}]) error {
				if j.Attempt == 1 {
					<-release
				}
				return nil
			})
			Handle(r, "steady", func(ctx context.Context, j *Job[struct{}]) error {
				time.Sleep(2 * time.Second)
				return nil
			})
			_, err := r.Enqueue(ctx, "steady", nil)
			require.NoError(t, err)
			task, err := r.Enqueue(ctx, "stuck", nil, Timeout(300*time.Millisecond), WithBackoff(Backoff{Initial: 10 * time.Millisecond}))
			require.NoError(t, err)
			done := waitState(t, r, task.ID, Succeeded, 3*time.Second)
			assert.Equal(t, 2, done.Attempt)
			assert.Contains(t, done.LastError, "timed out")
		},
		"LongTaskKeepsItsLease": func(t *testing.T) {
			store := h.newStore(t, storeConfig{})
			r := newRunner(t, store, Options{LeaseTTL: 400 * time.Millisecond})
			var attempts atomic.Int32
			Handle(r, "long", func(ctx context.Context, j *Job[struct{}]) error {
				attempts.Add(1)
				time.Sleep(2 * time.Second)
				return nil
			})
			task, err := r.Enqueue(ctx, "long", nil)
			require.NoError(t, err)
			waitState(t, r, task.ID, Succeeded, 10*time.Second)
			assert.Equal(t, int32(1), attempts.Load(), "renewed leases keep a long task on its worker")
		},
		"BadInput": func(t *testing.T) {
			r := newRunner(t, h.newStore(t, storeConfig{}), Options{}, true)
			for _, tc := range []struct {
				typ  string
				pay  any
				opts []EnqueueOption
			}{
				{"", nil, nil},
				{"has space", nil, nil},
				{"x", make(chan int), nil},
				{"x", nil, []EnqueueOption{Queue("{slot}")}},
				{"x", nil, []EnqueueOption{MaxAttempts(0)}},
				{"x", nil, []EnqueueOption{Timeout(-1)}},
				{"x", nil, []EnqueueOption{Unique("", time.Second)}},
				{"x", nil, []EnqueueOption{Unique("k", 0)}},
			} {
				_, err := r.Enqueue(ctx, tc.typ, tc.pay, tc.opts...)
				assert.ErrorIs(t, err, ErrInvalid, "type %q", tc.typ)
			}
			_, err := r.Get(ctx, "missing")
			assert.ErrorIs(t, err, ErrNotFound)
		},
	}
	maps.Copy(cases, idCases(h))
	maps.Copy(cases, pauseCases(h))
	maps.Copy(cases, batchCases(h))
	maps.Copy(cases, strandedCases(h))
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h.run(t, c)
		})
	}
}
