package cache

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runVersionSuite: writes that race a load win over it, and cache keys
// never collide with the store's own keys (issue 13, items 7 and 9).
func runVersionSuite(t *testing.T, h storeHarness) {
	ctx := context.Background()
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) { h.run(t, f) })
	}

	// A load reads the source (old value), a writer updates the source
	// and writes or deletes the key, then the load ends: the load must
	// not store its older value over the write.
	for _, tc := range []struct {
		name  string
		write func(c *Cache) error
		want  string // "" for not found
	}{
		{"DeleteWinsOverALoadInFlight", func(c *Cache) error { return c.Delete(ctx, "k") }, ""},
		{"SetWinsOverALoadInFlight", func(c *Cache) error { return Set(ctx, c, "k", "new") }, "new"},
	} {
		run(tc.name, func(t *testing.T) {
			c := newTestCache(t, h, Options{})
			started, release := make(chan struct{}), make(chan struct{})
			loaded := make(chan string, 1)
			go func() {
				v, err := GetOrLoad(ctx, c, "k", func(context.Context) (string, error) {
					close(started)
					<-release
					return "old", nil
				})
				assert.NoError(t, err)
				loaded <- v
			}()
			<-started
			require.NoError(t, tc.write(c))
			close(release)
			assert.Equal(t, "old", <-loaded, "the load's own caller gets what it loaded")
			v, err := Get[string](ctx, c, "k")
			if tc.want == "" {
				assert.ErrorIs(t, err, ErrNotFound, "the load did not store its value over the Delete (got %q)", v)
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.want, v, "the load did not store its value over the Set")
			}
			v, err = GetOrLoad(ctx, c, "k", func(context.Context) (string, error) { return "reloaded", nil })
			require.NoError(t, err)
			assert.Equal(t, tc.want+map[bool]string{true: "reloaded"}[tc.want == ""], v)
		})
	}

	run("CacheKeysDoNotCollideWithTagCounters", func(t *testing.T) {
		c := newTestCache(t, h, Options{})
		for _, k := range []string{"tag:{user:bob}", "t:{user:bob}", "lease:x", "l:x", "k:x"} {
			v, err := GetOrLoad(ctx, c, k, func(context.Context) (string, error) { return "entry " + k, nil })
			require.NoError(t, err)
			assert.Equal(t, "entry "+k, v)
		}
		n := 0
		load := func(context.Context) (int, error) { n++; return n, nil }
		v, err := GetOrLoad(ctx, c, "profile", load, Tags("user:bob"))
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		require.NoError(t, c.InvalidateTags(ctx, "user:bob"), "a cache key shaped like a tag counter does not break invalidation")
		v, err = GetOrLoad(ctx, c, "profile", load, Tags("user:bob"))
		require.NoError(t, err)
		assert.Equal(t, 2, v)
		for _, k := range []string{"tag:{user:bob}", "t:{user:bob}"} {
			s, err := Get[string](ctx, c, k)
			require.NoError(t, err)
			assert.Equal(t, "entry "+k, s, "nor does invalidation touch the entry")
		}
		assert.Zero(t, c.Stats().StoreErrors)
	})
}
