package cache

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 13, item 8: hostile and unusual requests.

func TestMiddlewareKeysOnHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{body: func(n int64, r *http.Request) string { return "page for " + r.Host }}
		h := middlewareFor(t, o, MiddlewareOptions{})
		evil := httptest.NewRequest("GET", "/product/1", nil)
		evil.Host = "evil.example"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, evil)
		assert.Equal(t, "page for evil.example", rec.Body.String())
		for range 2 {
			shop := httptest.NewRequest("GET", "/product/1", nil)
			shop.Host = "shop.example"
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, shop)
			assert.Equal(t, "page for shop.example", rec.Body.String(), "a forged Host header does not fill another host's entry")
		}
		assert.Equal(t, int64(2), o.calls.Load())
	})
}

func TestMiddlewareVaryOnFirstFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		calls := map[string]int{}
		c := New(Options{Logger: slog.New(slog.DiscardHandler), Jitter: -1, EarlyRefresh: -1})
		defer c.Shutdown(context.Background())
		h := Middleware(c, MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			lang := r.Header.Get("Accept-Language")
			mu.Lock()
			calls[lang]++
			mu.Unlock()
			w.Header().Set("Vary", "Accept-Language")
			io.WriteString(w, "hello in "+lang)
		}))
		langs := []string{"en", "fr", "de", "es"}
		got := make([]string, len(langs))
		var wg sync.WaitGroup
		for i, l := range langs {
			wg.Go(func() { got[i] = serve(h, "GET", "/", http.Header{"Accept-Language": {l}}).Body.String() })
		}
		synctest.Wait() // all four first requests are in the handler or waiting
		close(release)
		wg.Wait()
		for i, l := range langs {
			assert.Equal(t, "hello in "+l, got[i], "concurrent first requests each get their own variant")
		}
		for _, l := range langs {
			assert.Equal(t, "hello in "+l, serve(h, "GET", "/", http.Header{"Accept-Language": {l}}).Body.String())
		}
		for _, l := range langs {
			assert.Equal(t, 1, calls[l], "%s: stored per variant", l)
		}
	})
}

func TestMiddlewareNoCacheRevalidatesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		o := &origin{body: func(n int64, r *http.Request) string {
			if n > 1 {
				<-release
			}
			return "same body"
		}}
		h := middlewareFor(t, o, MiddlewareOptions{})
		serve(h, "GET", "/x", nil)
		serve(h, "GET", "/x", nil)
		require.Equal(t, int64(1), o.calls.Load())
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				r := serve(h, "GET", "/x", http.Header{"Cache-Control": {"no-cache"}})
				assert.Equal(t, "same body", r.Body.String())
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.Equal(t, int64(2), o.calls.Load(), "50 concurrent no-cache requests: one revalidation")
	})
}

func TestMiddlewareAgeHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{header: http.Header{"Cache-Control": {"max-age=60"}}}
		h := middlewareFor(t, o, MiddlewareOptions{})
		serve(h, "GET", "/", nil)
		time.Sleep(10 * time.Second)
		r := serve(h, "GET", "/", nil)
		assert.Equal(t, "10", r.Header().Get("Age"), "RFC 9111: the age of a cached response")
		assert.Equal(t, int64(1), o.calls.Load())
	})
}

func TestMiddlewareStreamsPastMaxBodySize(t *testing.T) {
	const size = 32 << 20
	chunk := []byte(strings.Repeat("x", 64<<10))
	c := New(Options{Logger: slog.New(slog.DiscardHandler)})
	defer c.Shutdown(context.Background())
	var calls int
	var mu sync.Mutex
	h := Middleware(c, MiddlewareOptions{MaxBodySize: 1 << 20})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 3 {
		resp, err := http.Get(srv.URL + "/big")
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, int64(size), n, "the whole body, uncached")
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(16<<20), "3 responses of 32 MiB streamed, not buffered: %d bytes allocated", allocated)
	srv.CloseClientConnections()
}
