package cache

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocalTierHitsAndStaleness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{TTL: time.Hour, Local: &LocalOptions{MaxStaleness: 10 * time.Second}, Logger: slog.New(slog.DiscardHandler)})
		defer c.Shutdown(context.Background())
		ctx := context.Background()
		var calls atomic.Int64
		load := counted(&calls, func(context.Context) (profile, error) { return profile{"ada", int(calls.Load())}, nil })
		for range 3 {
			v, err := GetOrLoad(ctx, c, "u", load)
			require.NoError(t, err)
			assert.Equal(t, "ada", v.Name)
		}
		st := c.Stats()
		assert.Equal(t, int64(2), st.LocalHits, "decoded values served in process")
		assert.Zero(t, st.Hits)
		// Past MaxStaleness the local copy is checked against the store
		// (still fresh there: a store hit, no load).
		time.Sleep(11 * time.Second)
		_, err := GetOrLoad(ctx, c, "u", load)
		require.NoError(t, err)
		assert.Equal(t, int64(1), c.Stats().Hits)
		assert.Equal(t, int64(1), calls.Load())
		// A local Set replaces the local copy at once.
		require.NoError(t, Set(ctx, c, "u", profile{"bob", 1}))
		v, _ := GetOrLoad(ctx, c, "u", load)
		assert.Equal(t, "bob", v.Name)
		// Not found is cached locally too.
		for range 2 {
			_, err := GetOrLoad(ctx, c, "gone", func(context.Context) (int, error) { return 0, ErrNotFound })
			assert.ErrorIs(t, err, ErrNotFound)
		}
	})
}

func TestLocalFillRacingAnInvalidation(t *testing.T) {
	l := newLocal(LocalOptions{})
	defer l.close()
	now := time.Now()
	// A node reads the store (old value)...
	snap := l.snapshot("k", []string{"t"})
	// ...an invalidation arrives before its fill...
	l.HandleMessage(&rtkit.Message{Data: []byte("k:k")})
	l.fill("k", []string{"t"}, snap, "old", false, now.Add(time.Hour))
	_, ok := l.get("k", []string{"t"})
	assert.False(t, ok, "a fill that read before an invalidation is not kept")

	snap = l.snapshot("k", []string{"t"})
	l.HandleMessage(&rtkit.Message{Data: []byte("t:t")})
	l.fill("k", []string{"t"}, snap, "old", false, now.Add(time.Hour))
	_, ok = l.get("k", []string{"t"})
	assert.False(t, ok, "nor one that read before a tag invalidation")

	snap = l.snapshot("k", []string{"t"})
	l.fill("k", []string{"t"}, snap, "new", false, now.Add(time.Hour))
	e, ok := l.get("k", []string{"t"})
	require.True(t, ok)
	assert.Equal(t, "new", e.val)
	l.HandleMessage(&rtkit.Message{Data: []byte("t:t")})
	_, ok = l.get("k", []string{"t"})
	assert.False(t, ok, "a tag invalidation drops the local copy")

	l.fill("k2", nil, l.snapshot("k2", nil), "v", false, now.Add(time.Hour))
	l.HandleGap(rtkit.ID{})
	_, ok = l.get("k2", nil)
	assert.False(t, ok, "a gap in invalidations drops everything")
}

func TestLocalTierInvalidatedAcrossNodes(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	ctx := context.Background()
	node := func() *Cache {
		bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: db.Client(t), Prefix: db.Prefix, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = bp.Close() })
		c := New(Options{Store: NewRedisStore(db.Client(t), db.Prefix+"c:"), Local: &LocalOptions{Backplane: bp}, Logger: slog.New(slog.DiscardHandler)})
		t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
		return c
	}
	a, b := node(), node()
	load := func(context.Context) (string, error) { return "v1", nil }
	for _, c := range []*Cache{a, b, a, b} {
		v, err := GetOrLoad(ctx, c, "k", load, Tags("tag"))
		require.NoError(t, err)
		assert.Equal(t, "v1", v)
	}
	assert.Equal(t, int64(1), b.Stats().LocalHits)

	require.NoError(t, Set(ctx, a, "k", "v2", Tags("tag")))
	require.Eventually(t, func() bool {
		v, err := GetOrLoad(ctx, b, "k", load, Tags("tag"))
		return err == nil && v == "v2"
	}, 5*time.Second, time.Millisecond, "node B drops its local copy when A writes")

	require.NoError(t, a.InvalidateTags(ctx, "tag"))
	require.Eventually(t, func() bool {
		v, err := GetOrLoad(ctx, b, "k", load, Tags("tag"))
		return err == nil && v == "v1"
	}, 5*time.Second, time.Millisecond, "and when A invalidates a tag")
}

// BenchmarkLocalHit compares a local-tier hit through GetOrLoad with
// otter's own GetIfPresent of the same value (issue 13, item 10: at most
// 2x, 0 allocations).
func BenchmarkLocalHit(b *testing.B) {
	ctx := context.Background()
	b.Run("rtkit", func(b *testing.B) {
		c := New(Options{Local: &LocalOptions{}})
		defer c.Shutdown(context.Background())
		load := func(context.Context) (profile, error) { return profile{"ada", 36}, nil }
		if _, err := GetOrLoad(ctx, c, "u", load); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := GetOrLoad(ctx, c, "u", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("otter-raw", func(b *testing.B) {
		oc, err := otter.New(&otter.Options[string, profile]{MaximumSize: 10000})
		if err != nil {
			b.Fatal(err)
		}
		oc.Set("u", profile{"ada", 36})
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := oc.GetIfPresent("u"); !ok {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkStoreHit(b *testing.B) {
	c := New(Options{})
	defer c.Shutdown(context.Background())
	ctx := context.Background()
	load := func(context.Context) (profile, error) { return profile{"ada", 36}, nil }
	if _, err := GetOrLoad(ctx, c, "u", load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GetOrLoad(ctx, c, "u", load); err != nil {
			b.Fatal(err)
		}
	}
}

// A caller who joins a load after an invalidation of its key must not
// keep the value the load read before it (issue 13, item 5): the fill is
// checked against the snapshot of whoever started the load.
func TestLocalFillOfJoinedLoadUsesStartersSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Local: &LocalOptions{}, Logger: slog.New(slog.DiscardHandler)})
		defer c.Shutdown(context.Background())
		ctx := context.Background()
		release := make(chan struct{})
		load := func(context.Context) (string, error) {
			<-release // read "old" from the source, then take a while
			return "old", nil
		}
		results := make(chan string, 2)
		get := func() {
			v, err := GetOrLoad(ctx, c, "k", load)
			assert.NoError(t, err)
			results <- v
		}
		go get()
		synctest.Wait() // the first caller's load is under way
		require.NoError(t, c.Delete(ctx, "k"))
		go get() // joins the load after the Delete
		synctest.Wait()
		require.Equal(t, int64(1), c.Stats().SharedWaits)
		close(release)
		assert.Equal(t, "old", <-results)
		assert.Equal(t, "old", <-results)
		_, ok := c.local.get("k", nil)
		assert.False(t, ok, "the value read before the Delete is not kept in the local tier")
	})
}

var farFuture = time.Now().Add(24 * time.Hour)
