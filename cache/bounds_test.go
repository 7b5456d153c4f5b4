package cache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rtkit/rtkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The memory store is bounded in bytes, by default too (issue 13, item 9).
func TestMemoryStoreIsBoundedInBytes(t *testing.T) {
	c := New(Options{})
	defer c.Shutdown(context.Background())
	assert.Equal(t, uint64(64<<20), c.store.(*MemoryStore).entries.GetMaximum(), "the default store's bound")

	const limit = 1 << 20
	s := NewMemoryStore(MemoryOptions{MaxBytes: limit})
	c = New(Options{Store: s})
	defer c.Shutdown(context.Background())
	ctx := context.Background()
	body := strings.Repeat("x", 10<<10)
	for i := range 3000 { // 30 MB of distinct keys
		_, err := GetOrLoad(ctx, c, fmt.Sprintf("/search?q=%d", i), func(context.Context) (string, error) { return body, nil })
		require.NoError(t, err)
	}
	s.entries.CleanUp()
	var held int
	for k, e := range s.entries.All() {
		held += len(k) + len(e.data)
	}
	assert.LessOrEqual(t, held, limit, "entries beyond MaxBytes are evicted")
	assert.Greater(t, held, limit/2, "and the store is still used")
}

// Invalidating ever new tags does not grow the local tier (issue 13,
// item 9).
func TestLocalTagVersionsAreBounded(t *testing.T) {
	l := newLocal(LocalOptions{})
	defer l.close()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range 200_000 {
		l.HandleMessage(&rtkit.Message{Data: fmt.Appendf(nil, "t:tag-%d", i)})
	}
	after := heap()
	runtime.KeepAlive(l)
	assert.Less(t, int64(after)-int64(before), int64(1<<20), "200,000 tags invalidated: the heap grew by %d bytes", int64(after)-int64(before))
	// Still exact for a tag: its entries go, others stay.
	now := l.snapshot("k", []string{"a"})
	l.fill("k", []string{"a"}, now, "v", false, farFuture)
	l.fill("k2", []string{"b"}, l.snapshot("k2", []string{"b"}), "w", false, farFuture)
	l.dropTag("a")
	_, ok := l.get("k", []string{"a"})
	assert.False(t, ok)
	_, ok = l.get("k2", []string{"b"})
	assert.True(t, ok || l.tagSlot("a") == l.tagSlot("b"))
}
