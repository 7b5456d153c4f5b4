package tasks

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTaskIDs(t *testing.T) {
	t.Parallel()
	var g idGen
	prev := ""
	start := time.Now().UnixMilli()
	for range 10_000 {
		id := g.next()
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), u.Version())
		require.Equal(t, uuid.RFC4122, u.Variant())
		require.Equal(t, u.String(), id, "canonical form")
		require.Greater(t, id, prev, "strictly increasing")
		sec, nsec := u.Time().UnixTime()
		require.GreaterOrEqual(t, time.Unix(sec, nsec).UnixMilli(), start, "not before the clock")
		prev = id
	}
}

func TestMemoryIndex(t *testing.T) {
	t.Parallel()
	x := memIndex{v7: make(map[int64]*memSpan), other: make(map[string]*memTask)}
	want := make(map[string]*memTask)
	rng := rand.New(rand.NewPCG(1, 2))
	var g idGen
	var ids []string
	// The runner's IDs, mostly; others' UUIDv7s, other IDs, and duplicates.
	for range 30_000 {
		var id string
		switch rng.IntN(10) {
		case 0:
			id = uuid.NewString()
		case 1:
			id = uuid.Must(uuid.NewV7()).String()
		case 2:
			id = "task-" + string(rune('a'+rng.IntN(26)))
		case 3:
			if len(ids) > 0 {
				id = ids[rng.IntN(len(ids))]
				break
			}
			fallthrough
		default:
			id = g.next()
		}
		ids = append(ids, id)
		require.Same(t, want[id], x.get(id), id)
		mt := &memTask{Task: Task{ID: id}}
		if want[id] != nil {
			require.False(t, x.add(mt), "duplicate %s", id)
			continue
		}
		require.True(t, x.add(mt), id)
		want[id] = mt
		if rng.IntN(3) == 0 {
			if v := want[ids[rng.IntN(len(ids))]]; v != nil {
				x.remove(v)
				delete(want, v.ID)
			}
		}
	}
	for _, id := range ids {
		require.Same(t, want[id], x.get(id), id)
	}
	for _, v := range want {
		x.remove(v)
	}
	assert.Empty(t, x.v7)
	assert.Empty(t, x.other)

	// IDs far out of order.
	var ts []*memTask
	for range 5000 {
		ts = append(ts, &memTask{Task: Task{ID: g.next()}})
	}
	rng.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	for _, mt := range ts {
		require.True(t, x.add(mt))
	}
	for _, mt := range ts {
		require.Same(t, mt, x.get(mt.ID))
		require.False(t, x.add(&memTask{Task: Task{ID: mt.ID}}))
	}
	for _, mt := range ts {
		x.remove(mt)
	}
	assert.Empty(t, x.v7)
	assert.Empty(t, x.other)
}

// TestAttemptContext checks the lazy context of an attempt against what
// context.WithDeadline does.
func TestAttemptContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	base := context.WithoutCancel(context.WithValue(context.Background(), key{}, "v"))
	newAttempt := func(timeout time.Duration) *attempt {
		return &attempt{lease: &Lease{Task: &Task{ID: "t"}}, base: base, deadline: time.Now().Add(timeout)}
	}
	t.Run("Stop", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAttempt(time.Minute)
			assert.NoError(t, a.Err())
			assert.Equal(t, "v", a.Value(key{}))
			dl, ok := a.Deadline()
			assert.True(t, ok)
			assert.Equal(t, time.Now().Add(time.Minute), dl)
			a.stop(stopCancel)
			assert.ErrorIs(t, a.Err(), context.Canceled)
			assert.ErrorIs(t, context.Cause(a), context.Canceled)
			<-a.Done()
			assert.ErrorIs(t, a.Err(), context.Canceled)
			time.Sleep(time.Hour)
			assert.ErrorIs(t, a.Err(), context.Canceled, "the first error stays")
			assert.Equal(t, stopCancel, a.why.Load())
		})
	})
	t.Run("StopAfterDone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAttempt(time.Minute)
			child, cancel := context.WithCancel(a)
			defer cancel()
			after := make(chan struct{})
			context.AfterFunc(a, func() { close(after) })
			a.stop(stopLost)
			<-child.Done()
			<-after
			assert.ErrorIs(t, a.Err(), context.Canceled)
			assert.ErrorIs(t, child.Err(), context.Canceled)
			assert.ErrorIs(t, context.Cause(child), context.Canceled)
			assert.Equal(t, "v", child.Value(key{}))
		})
	})
	t.Run("Timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAttempt(time.Second)
			time.Sleep(time.Second)
			assert.ErrorIs(t, a.Err(), context.DeadlineExceeded, "without Done")
			assert.ErrorIs(t, context.Cause(a), context.DeadlineExceeded)
			a.end()
			assert.ErrorIs(t, a.Err(), context.DeadlineExceeded, "the timeout came first")
			<-a.Done()

			b := newAttempt(time.Second)
			child, cancel := context.WithTimeout(b, time.Hour)
			defer cancel()
			<-child.Done()
			assert.Equal(t, time.Second, time.Since(b.deadline.Add(-time.Second)))
			assert.ErrorIs(t, b.Err(), context.DeadlineExceeded)
			assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
			b.end()
			assert.ErrorIs(t, b.Err(), context.DeadlineExceeded)
		})
	})
	t.Run("End", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAttempt(time.Second)
			a.end()
			time.Sleep(time.Hour)
			<-a.Done()
			assert.ErrorIs(t, a.Err(), context.Canceled, "the end came first")
			assert.Equal(t, stopNone, a.why.Load())
		})
	})
}

// TestDispatchBesideLongTasks checks that tasks holding most of a runner's
// slots for a long time don't keep the dispatcher from filling the rest:
// it gathers freed slots for a batch, but only for a moment.
func TestDispatchBesideLongTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRunner(Options{Concurrency: 8, Logger: quiet})
		release := make(chan struct{})
		Handle(r, "long", func(ctx context.Context, j *Job[struct{}]) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
		var short atomic.Int32
		Handle(r, "short", func(ctx context.Context, j *Job[struct{}]) error { short.Add(1); return nil })
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- r.Run(ctx) }()
		for range 8 { // fills every slot, so the last claim leaves a backlog
			_, err := r.Enqueue(ctx, "long", nil)
			require.NoError(t, err)
		}
		for range 100 {
			_, err := r.Enqueue(ctx, "short", nil)
			require.NoError(t, err)
		}
		time.Sleep(time.Second)
		release <- struct{}{} // one long task ends: 1 slot of 8 is free
		time.Sleep(time.Second)
		assert.EqualValues(t, 100, short.Load(), "short tasks run in the one free slot")
		close(release)
		cancel()
		require.NoError(t, <-ran)
	})
}

// failingClaim is a MemoryStore whose next Claim fails after leasing:
// as a Redis claim from several queues does when a later queue's script
// call fails.
type failingClaim struct {
	*MemoryStore
	fail atomic.Bool
}

func (s *failingClaim) Claim(ctx context.Context, worker string, queues []string, max int, ttl time.Duration) ([]*Lease, error) {
	leases, err := s.MemoryStore.Claim(ctx, worker, queues, max, ttl)
	if err == nil && len(leases) > 0 && s.fail.CompareAndSwap(true, false) {
		err = errors.New("the next queue's claim failed")
	}
	return leases, err
}

// The leases a failing claim made are run at once, not left active until
// they expire (which would count their attempt and run them again).
func TestDispatchRunsLeasesBesideAClaimError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &failingClaim{MemoryStore: NewMemoryStore(MemoryOptions{})}
		r := NewRunner(Options{Store: store, Logger: quiet})
		attempts := make(chan int, 10)
		Handle(r, "job", func(ctx context.Context, j *Job[struct{}]) error { attempts <- j.Attempt; return nil })
		ctx, cancel := context.WithCancel(context.Background())
		task, err := r.Enqueue(ctx, "job", nil)
		require.NoError(t, err)
		store.fail.Store(true)
		ran := make(chan error, 1)
		go func() { ran <- r.Run(ctx) }()
		time.Sleep(time.Minute) // past any lease expiry
		require.Len(t, attempts, 1)
		assert.Equal(t, 1, <-attempts, "the first attempt ran")
		got, err := r.Get(ctx, task.ID)
		require.NoError(t, err)
		assert.Equal(t, Succeeded, got.State)
		assert.False(t, store.fail.Load(), "the claim did fail")
		cancel()
		require.NoError(t, <-ran)
	})
}

func TestNumStates(t *testing.T) {
	assert.Equal(t, len(States), numStates)
}

// Keeping RetentionCount final tasks costs a finish O(1): the trim of the
// oldest one doesn't copy the list (it once did, 10,000 entries a finish
// at the default count, which made the default store 100 times slower).
// A copy per trim is an allocation per finish; amortized growth of the
// list is far less than one.
func TestMemoryRetentionTrimIsAmortized(t *testing.T) {
	const keep = 1000
	s := NewMemoryStore(MemoryOptions{RetentionCount: keep})
	ctx := context.Background()
	var g idGen
	for range 3 * keep {
		require.NoError(t, s.Enqueue(ctx, &Task{ID: g.next(), Type: "t", Queue: DefaultQueue, MaxAttempts: 1}))
	}
	leases, err := s.Claim(ctx, "w", []string{DefaultQueue}, 3*keep, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, 3*keep)
	var finished []string
	finish := func() {
		require.NoError(t, s.Finish(ctx, leases[0], Outcome{State: Succeeded}))
		finished = append(finished, leases[0].Task.ID)
		leases = leases[1:]
	}
	for range keep {
		finish() // fills the list
	}
	assert.Zero(t, testing.AllocsPerRun(keep, finish), "allocations per finish past RetentionCount")
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, keep, counts[DefaultQueue][Succeeded])
	// The newest keep tasks remain, newest first.
	var listed []string
	for cursor := ""; ; {
		p, err := s.List(ctx, ListOptions{State: Succeeded, Cursor: cursor, Limit: 1000})
		require.NoError(t, err)
		for _, task := range p.Tasks {
			listed = append(listed, task.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	want := slices.Clone(finished[len(finished)-keep:])
	slices.Reverse(want)
	assert.Equal(t, want, listed)
	_, err = s.Get(ctx, finished[len(finished)-keep-1])
	assert.ErrorIs(t, err, ErrNotFound, "the newest trimmed task is gone")
	assert.LessOrEqual(t, cap(s.queues[DefaultQueue].final[Succeeded.index()].buf), 3*keep, "the array stays within a small multiple of RetentionCount")
}

// mfin is a final task in TestMemoryRetentionModel's model.
type mfin struct {
	id string
	at time.Time
}

// The memory store's final lists against a model, through random
// enqueues, claims, finishes to each final state, retries and deletes of
// final tasks, and maintenance as the clock moves, with random
// RetentionCount and Retention: List pages newest first, counts, Get of
// trimmed and deleted tasks, and the lists' arrays (trimmed entries
// cleared, no entry of a task that left the list, bounded capacity).
func TestMemoryRetentionModel(t *testing.T) {
	t.Parallel()
	for seed := range 24 {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			keep := 1 + rng.IntN(40)
			ret := time.Duration(1+rng.IntN(100)) * time.Second
			s := NewMemoryStore(MemoryOptions{RetentionCount: keep, Retention: ret})
			ctx := context.Background()
			var g idGen
			model := map[State][]mfin{}
			var leases []*Lease
			gone := map[string]bool{}
			trim := func(st State, now time.Time) {
				l := model[st]
				for len(l) > 0 && (len(l) > keep || now.Sub(l[0].at) >= ret) {
					gone[l[0].id] = true
					l = l[1:]
				}
				model[st] = l
			}
			dropFromModel := func(id string) {
				for st, l := range model {
					if i := slices.IndexFunc(l, func(f mfin) bool { return f.id == id }); i >= 0 {
						model[st] = slices.Delete(slices.Clone(l), i, i+1)
					}
				}
			}
			for step := range 800 {
				switch op := rng.IntN(10); {
				case op < 3:
					for range 1 + rng.IntN(5) {
						require.NoError(t, s.Enqueue(ctx, &Task{ID: g.next(), Type: "t", Queue: DefaultQueue, MaxAttempts: 3}))
					}
				case op < 5:
					ls, err := s.Claim(ctx, "w", []string{DefaultQueue}, 1+rng.IntN(8), time.Hour)
					require.NoError(t, err)
					leases = append(leases, ls...)
				case op < 8 && len(leases) > 0:
					i := rng.IntN(len(leases))
					l := leases[i]
					leases = slices.Delete(leases, i, i+1)
					st := []State{Succeeded, Dead, Cancelled}[rng.IntN(3)]
					now := time.Now()
					if err := s.Finish(ctx, l, Outcome{State: st, Error: "x"}); err != nil {
						require.ErrorIs(t, err, ErrLeaseLost)
						break
					}
					model[st] = append(model[st], mfin{l.Task.ID, now})
					trim(st, now)
				case op == 8:
					// retry or delete a random final task
					var all []mfin
					for _, st := range []State{Dead, Cancelled, Succeeded} {
						all = append(all, model[st]...)
					}
					if len(all) == 0 {
						break
					}
					f := all[rng.IntN(len(all))]
					if rng.IntN(2) == 0 {
						tk, err := s.Get(ctx, f.id)
						require.NoError(t, err)
						if tk.State == Succeeded {
							break
						}
						_, err = s.Retry(ctx, f.id)
						require.NoError(t, err)
					} else {
						require.NoError(t, s.Delete(ctx, f.id))
						gone[f.id] = true
					}
					dropFromModel(f.id)
				default:
					time.Sleep(time.Duration(rng.IntN(20)) * time.Second)
					if rng.IntN(2) == 0 {
						_, err := s.Maintain(ctx)
						require.NoError(t, err)
						now := time.Now()
						for _, st := range []State{Succeeded, Dead, Cancelled} {
							trim(st, now)
						}
					}
				}
				q := s.queues[DefaultQueue]
				if q == nil {
					continue
				}
				for _, st := range []State{Succeeded, Dead, Cancelled} {
					var got []string
					for cur := ""; ; {
						p, err := s.List(ctx, ListOptions{Queue: DefaultQueue, State: st, Cursor: cur, Limit: 7})
						require.NoError(t, err)
						for _, tk := range p.Tasks {
							got = append(got, tk.ID)
						}
						if cur = p.Next; cur == "" {
							break
						}
					}
					var want []string
					for i := len(model[st]) - 1; i >= 0; i-- {
						want = append(want, model[st][i].id)
					}
					require.Equal(t, want, got, "seed %d step %d state %s keep %d", seed, step, st, keep)
					require.Equal(t, len(want), q.counts[st.index()])
					f := &q.final[st.index()]
					for i := 0; i < f.head; i++ {
						require.Zero(t, f.buf[i], "trimmed entry not cleared")
					}
					held := 0
					for _, e := range f.entries() {
						if e.t != nil {
							require.Equal(t, e.gen, e.t.gen, "an entry of a task that left the list")
							held++
						}
					}
					require.Equal(t, len(want), held, "entries held")
					tail := f.buf[len(f.buf):cap(f.buf)]
					for _, e := range tail {
						require.Zero(t, e, "entry past len not cleared")
					}
					require.LessOrEqual(t, cap(f.buf), 4*(len(f.buf)-f.head)+256+2*keep+64, "cap bound")
				}
				if step%100 == 99 {
					for id := range gone {
						_, err := s.Get(ctx, id)
						require.ErrorIs(t, err, ErrNotFound, id)
					}
				}
			}
		})
	}
}
