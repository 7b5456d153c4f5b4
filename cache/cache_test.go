package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

type profile struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

// storeHarness runs the suite on one kind of store.
type storeHarness struct {
	newStore func(t *testing.T) Store
	// run runs a case; the memory store's run inside a synctest bubble.
	run func(t *testing.T, f func(t *testing.T))
	// wait lets time pass (fake time in a bubble).
	wait func(d time.Duration)
}

func newTestCache(t *testing.T, h storeHarness, o Options) *Cache {
	t.Helper()
	o.Store = h.newStore(t)
	if o.StoreTimeout == 0 {
		// These cases are about a healthy store: on a machine shared by
		// many test runs (and a Cluster's pipelines cross nodes), a call
		// can outlast the 250 ms default. TestRedisHangFailsOpen tests
		// the default.
		o.StoreTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := New(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, c.Shutdown(ctx))
	})
	return c
}

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	runSuite(t, storeHarness{
		newStore: func(*testing.T) Store { return NewMemoryStore(MemoryOptions{}) },
		run:      func(t *testing.T, f func(t *testing.T)) { synctest.Test(t, f) },
		wait: func(d time.Duration) {
			time.Sleep(d)
			synctest.Wait()
		},
	})
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	n := 0
	var mu sync.Mutex
	runSuite(t, storeHarness{
		newStore: func(t *testing.T) Store {
			mu.Lock()
			n++
			prefix := fmt.Sprintf("%s%d:", db.Prefix, n)
			mu.Unlock()
			return NewRedisStore(db.Client(t), prefix)
		},
		run:  func(t *testing.T, f func(t *testing.T)) { f(t) },
		wait: func(d time.Duration) { time.Sleep(d) },
	})
}

// counted wraps a loader and counts its calls.
func counted[T any](calls *atomic.Int64, f func(ctx context.Context) (T, error)) func(ctx context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		calls.Add(1)
		return f(ctx)
	}
}

func runSuite(t *testing.T, h storeHarness) {
	ctx := context.Background()
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) { h.run(t, f) })
	}

	run("LoadsOnceThenHits", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (profile, error) { return profile{"ada", 36}, nil })
		for range 3 {
			v, err := GetOrLoad(ctx, c, "user:1", load)
			require.NoError(t, err)
			assert.Equal(t, profile{"ada", 36}, v)
		}
		assert.Equal(t, int64(1), calls.Load())
		st := c.Stats()
		assert.Equal(t, int64(2), st.Hits)
		assert.Equal(t, int64(1), st.Misses)
		v, err := Get[profile](ctx, c, "user:1")
		require.NoError(t, err)
		assert.Equal(t, "ada", v.Name)
		_, err = Get[profile](ctx, c, "user:2")
		assert.ErrorIs(t, err, ErrNotFound)
	})

	run("StampedeLoadsOnce", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		release := make(chan struct{})
		load := counted(&calls, func(context.Context) (int, error) {
			<-release
			return 42, nil
		})
		const callers = 1000
		var wg sync.WaitGroup
		results := make([]int, callers)
		for i := range callers {
			wg.Go(func() {
				v, err := GetOrLoad(ctx, c, "cold", load)
				assert.NoError(t, err)
				results[i] = v
			})
		}
		for c.Stats().SharedWaits+c.Stats().Loads < callers {
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		assert.Equal(t, int64(1), calls.Load(), "1,000 concurrent callers, one load")
		for _, v := range results {
			require.Equal(t, 42, v)
		}
		assert.Equal(t, int64(callers-1), c.Stats().SharedWaits)
	})

	run("CancelledCallerDoesNotFailOthers", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		started, release := make(chan struct{}), make(chan struct{})
		load := counted(&calls, func(lctx context.Context) (string, error) {
			close(started)
			select {
			case <-release:
				return "value", lctx.Err()
			case <-lctx.Done():
				return "", lctx.Err()
			}
		})
		first, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := GetOrLoad(first, c, "k", load)
			errc <- err
		}()
		<-started
		second := make(chan string, 1)
		go func() {
			v, err := GetOrLoad(ctx, c, "k", load)
			assert.NoError(t, err)
			second <- v
		}()
		for c.Stats().SharedWaits == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		assert.ErrorIs(t, <-errc, context.Canceled, "the first caller honours its own context")
		close(release)
		assert.Equal(t, "value", <-second, "the load goes on for the other caller")
		assert.Equal(t, int64(1), calls.Load())
	})

	run("NegativeCaching", func(t *testing.T) {
		c := newTestCache(t, h, Options{NegativeTTL: time.Second, Jitter: -1})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (profile, error) {
			return profile{}, fmt.Errorf("no such user: %w", ErrNotFound)
		})
		for range 3 {
			_, err := GetOrLoad(ctx, c, "user:404", load)
			assert.ErrorIs(t, err, ErrNotFound)
		}
		assert.Equal(t, int64(1), calls.Load(), "the absence is cached")
		assert.Zero(t, c.Stats().LoadErrors)
		h.wait(1100 * time.Millisecond)
		_, err := GetOrLoad(ctx, c, "user:404", load)
		assert.ErrorIs(t, err, ErrNotFound)
		assert.Equal(t, int64(2), calls.Load(), "for NegativeTTL only")
	})

	run("ErrorsAreNotCached", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		boom := errors.New("database down")
		load := counted(&calls, func(context.Context) (int, error) { return 0, boom })
		_, err := GetOrLoad(ctx, c, "k", load)
		assert.ErrorIs(t, err, boom)
		_, err = GetOrLoad(ctx, c, "k", load)
		assert.ErrorIs(t, err, boom)
		assert.Equal(t, int64(2), calls.Load())
		assert.Equal(t, int64(2), c.Stats().LoadErrors)
		_, err = GetOrLoad(ctx, c, "p", func(context.Context) (int, error) { panic("loader bug") })
		assert.ErrorContains(t, err, "panicked")
	})

	run("ExpiresAfterTTL", func(t *testing.T) {
		c := newTestCache(t, h, Options{TTL: time.Second, Jitter: -1, EarlyRefresh: -1})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (int64, error) { return calls.Load(), nil })
		v, _ := GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(1), v)
		h.wait(100 * time.Millisecond)
		v, _ = GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(1), v)
		h.wait(time.Second)
		v, _ = GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(2), v, "loaded again after the TTL")
		v, _ = GetOrLoad(ctx, c, "short", load, TTL(time.Hour))
		assert.Equal(t, int64(3), v)
	})

	run("StaleWhileRevalidateAndIfError", func(t *testing.T) {
		c := newTestCache(t, h, Options{TTL: 200 * time.Millisecond, StaleFor: time.Minute, Jitter: -1, EarlyRefresh: -1})
		var calls atomic.Int64
		var fail atomic.Bool
		load := counted(&calls, func(context.Context) (int64, error) {
			if fail.Load() {
				return 0, errors.New("source down")
			}
			return calls.Load(), nil
		})
		v, _ := GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(1), v)
		h.wait(300 * time.Millisecond)
		// Expired but within StaleFor: the old value at once, a refresh
		// behind it.
		v, err := GetOrLoad(ctx, c, "k", load)
		require.NoError(t, err)
		assert.Equal(t, int64(1), v)
		waitUntil(t, h, func() bool { x, _ := Get[int64](ctx, c, "k"); return x == 2 })
		assert.Equal(t, int64(1), c.Stats().StaleServed)

		// The source fails: the stale value is still served.
		fail.Store(true)
		h.wait(300 * time.Millisecond)
		for range 3 {
			v, err = GetOrLoad(ctx, c, "k", load)
			require.NoError(t, err)
			assert.Equal(t, int64(2), v)
		}
		waitUntil(t, h, func() bool { return c.Stats().LoadErrors > 0 })
	})

	run("EarlyRefresh", func(t *testing.T) {
		// A load that takes long compared with the TTL is refreshed before
		// it expires (a huge factor makes it certain).
		c := newTestCache(t, h, Options{TTL: time.Hour, EarlyRefresh: 1e12, Jitter: -1})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (int64, error) {
			time.Sleep(2 * time.Millisecond)
			return calls.Load(), nil
		})
		v, _ := GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(1), v)
		v, _ = GetOrLoad(ctx, c, "k", load)
		assert.Equal(t, int64(1), v, "the current value is served")
		waitUntil(t, h, func() bool { return calls.Load() >= 2 })
	})

	run("Tags", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (int64, error) { return calls.Load(), nil })
		v, _ := GetOrLoad(ctx, c, "user:1:profile", load, Tags("user:1"))
		assert.Equal(t, int64(1), v)
		w, _ := GetOrLoad(ctx, c, "user:2:profile", load, Tags("user:2"))
		assert.Equal(t, int64(2), w)
		require.NoError(t, c.InvalidateTags(ctx, "user:1"))
		v, _ = GetOrLoad(ctx, c, "user:1:profile", load, Tags("user:1"))
		assert.Equal(t, int64(3), v, "invalidated by its tag")
		w, _ = GetOrLoad(ctx, c, "user:2:profile", load, Tags("user:2"))
		assert.Equal(t, int64(2), w, "other tags untouched")
		require.NoError(t, Set(ctx, c, "user:1:profile", int64(99), Tags("user:1")))
		v, _ = GetOrLoad(ctx, c, "user:1:profile", load, Tags("user:1"))
		assert.Equal(t, int64(99), v)
		require.NoError(t, c.Delete(ctx, "user:1:profile"))
		_, err := Get[int64](ctx, c, "user:1:profile", Tags("user:1"))
		assert.ErrorIs(t, err, ErrNotFound)
	})

	run("CorruptEntriesAreReloaded", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (string, error) { return "good", nil })
		for _, bad := range [][]byte{[]byte("garbage"), {}, {formatVersion, 99, 0, 1, 2}, append((&entry{codec: 200, soft: time.Now().Add(time.Hour), hard: time.Now().Add(time.Hour)}).encode(), '"', 'x', '"')} {
			require.NoError(t, c.store.Set(ctx, "k", bad, time.Hour))
			v, err := GetOrLoad(ctx, c, "k", load)
			require.NoError(t, err)
			assert.Equal(t, "good", v)
			require.NoError(t, c.Delete(ctx, "k"))
		}
		assert.Equal(t, int64(4), calls.Load())
		assert.Equal(t, int64(4), c.Stats().Corrupt)
	})

	run("ShutdownWaitsForLoads", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		release := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = GetOrLoad(ctx, c, "slow", func(context.Context) (int, error) { <-release; return 1, nil })
		}()
		for c.Stats().Loads == 0 {
			time.Sleep(time.Millisecond)
		}
		sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		assert.ErrorIs(t, c.Shutdown(sctx), context.DeadlineExceeded)
		cancel()
		close(release)
		<-done
		require.NoError(t, c.Shutdown(ctx))
		_, err := GetOrLoad(ctx, c, "new", func(context.Context) (int, error) { return 1, nil })
		assert.ErrorIs(t, err, ErrClosed)
	})
	runVersionSuite(t, h)
}

func waitUntil(t *testing.T, h storeHarness, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 2000 {
			t.Fatal("timed out")
		}
		h.wait(5 * time.Millisecond)
	}
}

func TestRedisDownFailsOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := New(Options{Store: NewRedisStore(srv.Client(t), ""), Logger: slog.New(slog.DiscardHandler), MaxConcurrentLoads: 2})
	defer c.Shutdown(context.Background())
	ctx := context.Background()
	var calls atomic.Int64
	load := counted(&calls, func(context.Context) (string, error) { return "from source", nil })
	v, err := GetOrLoad(ctx, c, "k", load)
	require.NoError(t, err)
	assert.Equal(t, "from source", v)

	srv.Stop(t)
	for range 3 {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := GetOrLoad(qctx, c, "k", load)
		cancel()
		require.NoError(t, err, "fail open")
		assert.Equal(t, "from source", v)
	}
	st := c.Stats()
	assert.Equal(t, int64(1), st.Misses, "a store error is not a miss")
	assert.GreaterOrEqual(t, st.StoreErrors, int64(1))
	assert.GreaterOrEqual(t, st.StoreErrors+st.Bypassed, int64(3), "after an error the store cools down instead of making every caller wait")
	_, err = Get[string](ctx, c, "k")
	assert.ErrorIs(t, err, ErrStoreUnavailable)
	assert.NotEmpty(t, st.LastStoreError)
	assert.Equal(t, int64(4), calls.Load())

	srv.Start(t)
	require.Eventually(t, func() bool {
		before := c.Stats().Hits
		_, err := GetOrLoad(ctx, c, "k", load)
		return err == nil && c.Stats().Hits > before
	}, 20*time.Second, 50*time.Millisecond, "caching resumes by itself")
}

func TestLeaseLoadsOnceAcrossNodes(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	var calls atomic.Int64
	load := counted(&calls, func(context.Context) (string, error) {
		time.Sleep(100 * time.Millisecond) // a slow source
		return "value", nil
	})
	nodes := make([]*Cache, 2)
	for i := range nodes {
		nodes[i] = New(Options{Store: NewRedisStore(db.Client(t), db.Prefix), Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		t.Cleanup(func() { _ = nodes[i].Shutdown(context.Background()) })
	}
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			v, err := GetOrLoad(ctx, nodes[i%2], "cold", load)
			assert.NoError(t, err)
			assert.Equal(t, "value", v)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1), calls.Load(), "1,000 callers on two nodes, one load")
	assert.LessOrEqual(t, nodes[0].Stats().LeaseWaits+nodes[1].Stats().LeaseWaits, int64(1))
}

func TestRedisClusterStore(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	n := 0
	var mu sync.Mutex
	runSuite(t, storeHarness{
		newStore: func(t *testing.T) Store {
			mu.Lock()
			n++
			prefix := fmt.Sprintf("rtkit-test:%d:", n)
			mu.Unlock()
			return NewRedisStore(cl.Client(t), prefix)
		},
		run:  func(t *testing.T, f func(t *testing.T)) { f(t) },
		wait: func(d time.Duration) { time.Sleep(d) },
	})
}
