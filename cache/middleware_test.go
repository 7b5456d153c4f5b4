package cache

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// origin is a handler that counts its calls and answers as told.
type origin struct {
	calls  atomic.Int64
	status atomic.Int64
	header http.Header
	body   func(n int64, r *http.Request) string
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.calls.Add(1)
	for k, v := range o.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "text/plain")
	if s := o.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
	body := fmt.Sprintf("response %d", n)
	if o.body != nil {
		body = o.body(n, r)
	}
	fmt.Fprint(w, body)
}

// serve runs one request through h (in memory, so it works in a synctest
// bubble).
func serve(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func middlewareFor(t *testing.T, o *origin, opts MiddlewareOptions) http.Handler {
	c := New(Options{Logger: slog.New(slog.DiscardHandler), Jitter: -1, EarlyRefresh: -1})
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return Middleware(c, opts)(o)
}

func TestMiddlewareCachesAndValidates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{header: http.Header{"Cache-Control": {"max-age=60"}}}
		h := middlewareFor(t, o, MiddlewareOptions{})
		a := serve(h, "GET", "/items?page=1", nil)
		b := serve(h, "GET", "/items?page=1", nil)
		assert.Equal(t, 200, a.Code)
		assert.Equal(t, "response 1", a.Body.String())
		assert.Equal(t, "response 1", b.Body.String(), "served from the cache")
		assert.Equal(t, int64(1), o.calls.Load())
		etag := a.Header().Get("ETag")
		require.NotEmpty(t, etag)
		assert.Equal(t, etag, b.Header().Get("ETag"), "a strong ETag from the content")
		assert.Equal(t, "10", a.Header().Get("Content-Length"))
		assert.Equal(t, "text/plain", b.Header().Get("Content-Type"))

		head := serve(h, "HEAD", "/items?page=1", nil)
		assert.Equal(t, 200, head.Code)
		assert.Empty(t, head.Body.String(), "HEAD has no body")
		assert.Equal(t, etag, head.Header().Get("ETag"))
		assert.Equal(t, int64(1), o.calls.Load(), "HEAD is answered from the cached GET")

		other := serve(h, "GET", "/items?page=2", nil)
		assert.Equal(t, "response 2", other.Body.String(), "the query is part of the key")

		for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
			r := serve(h, "GET", "/items?page=1", http.Header{"If-None-Match": {inm}})
			assert.Equal(t, http.StatusNotModified, r.Code, "If-None-Match: %s", inm)
			assert.Empty(t, r.Body.String())
			assert.Equal(t, etag, r.Header().Get("ETag"))
		}
		r := serve(h, "GET", "/items?page=1", http.Header{"If-None-Match": {`"other"`}})
		assert.Equal(t, 200, r.Code)

		// max-age=60: fresh for a minute, then loaded again.
		time.Sleep(61 * time.Second)
		assert.Equal(t, "response 3", serve(h, "GET", "/items?page=1", nil).Body.String())
	})
}

func TestMiddlewareRequestDirectives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{}
		h := middlewareFor(t, o, MiddlewareOptions{})
		serve(h, "GET", "/x", nil)
		r := serve(h, "GET", "/x", http.Header{"Cache-Control": {"no-cache"}})
		assert.Equal(t, "response 2", r.Body.String(), "no-cache goes to the origin")
		assert.Equal(t, "response 2", serve(h, "GET", "/x", nil).Body.String(), "and refreshes the cache")
		r = serve(h, "GET", "/x", http.Header{"Cache-Control": {"no-store"}})
		assert.Equal(t, "response 3", r.Body.String())
		assert.Equal(t, "response 2", serve(h, "GET", "/x", nil).Body.String(), "no-store is not stored")
		for _, hdr := range []http.Header{{"Authorization": {"Bearer t"}}, {"Cookie": {"s=1"}}} {
			r := serve(h, "GET", "/x", hdr)
			assert.NotEqual(t, "response 2", r.Body.String(), "%v: personal requests bypass the shared cache", hdr)
		}
		r = serve(h, "POST", "/x", nil)
		assert.NotEqual(t, "response 2", r.Body.String(), "only GET and HEAD")
	})
}

func TestMiddlewareWhatIsNotCached(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		cached bool
	}{
		{"200", 200, nil, true},
		{"404", 404, nil, true},
		{"201", 201, nil, false},
		{"500", 500, nil, false},
		{"no-store", 200, http.Header{"Cache-Control": {"no-store"}}, false},
		{"private", 200, http.Header{"Cache-Control": {"private, max-age=60"}}, false},
		{"max-age=0", 200, http.Header{"Cache-Control": {"max-age=0"}}, false},
		{"set-cookie", 200, http.Header{"Set-Cookie": {"s=1"}}, false},
		{"vary star", 200, http.Header{"Vary": {"*"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := &origin{header: tc.header}
				o.status.Store(int64(tc.status))
				h := middlewareFor(t, o, MiddlewareOptions{})
				a := serve(h, "GET", "/", nil)
				assert.Equal(t, tc.status, a.Code)
				serve(h, "GET", "/", nil)
				want := int64(2)
				if tc.cached {
					want = 1
				}
				assert.Equal(t, want, o.calls.Load())
			})
		})
	}
}

func TestMiddlewareVary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{header: http.Header{"Vary": {"Accept-Language"}},
			body: func(n int64, r *http.Request) string { return r.Header.Get("Accept-Language") + fmt.Sprint(n) }}
		h := middlewareFor(t, o, MiddlewareOptions{})
		en := http.Header{"Accept-Language": {"en"}}
		fr := http.Header{"Accept-Language": {"fr"}}
		serve(h, "GET", "/", en) // learns the Vary
		a := serve(h, "GET", "/", en)
		b := serve(h, "GET", "/", fr)
		c := serve(h, "GET", "/", fr)
		d := serve(h, "GET", "/", en)
		assert.Equal(t, a.Body.String(), d.Body.String())
		assert.Equal(t, b.Body.String(), c.Body.String())
		assert.Contains(t, b.Body.String(), "fr")
		assert.Contains(t, d.Body.String(), "en")
		assert.Equal(t, "Accept-Language", d.Header().Get("Vary"))
	})
}

func TestMiddlewareStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &origin{header: http.Header{"Cache-Control": {"max-age=10, stale-while-revalidate=60, stale-if-error=300"}}}
		h := middlewareFor(t, o, MiddlewareOptions{})
		assert.Equal(t, "response 1", serve(h, "GET", "/", nil).Body.String())
		time.Sleep(11 * time.Second)
		// Stale: served at once, refreshed behind it.
		assert.Equal(t, "response 1", serve(h, "GET", "/", nil).Body.String())
		synctest.Wait()
		assert.Equal(t, "response 2", serve(h, "GET", "/", nil).Body.String())

		// The origin fails: the stale copy is kept and served.
		o.status.Store(500)
		time.Sleep(11 * time.Second)
		for range 3 {
			r := serve(h, "GET", "/", nil)
			synctest.Wait()
			assert.Equal(t, 200, r.Code)
			assert.Equal(t, "response 2", r.Body.String())
		}
		assert.Greater(t, o.calls.Load(), int64(2), "the origin was asked again")
	})
}
