package cache

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// httpCache is the state of one Middleware.
type httpCache struct {
	c    *Cache
	opts MiddlewareOptions

	mu    sync.Mutex
	reval map[string]*revalidation // no-cache revalidations under way, by entry key
}

// revalidation is a handler run shared by concurrent no-cache requests.
type revalidation struct {
	done chan struct{}
	resp response
	err  error
}

func (m *httpCache) serve(next http.Handler, w http.ResponseWriter, r *http.Request, key string, noCache bool) {
	ctx, c := r.Context(), m.c
	// The Vary of the URL's responses names the request headers that
	// select the entry.
	varyKey := "http-vary:" + key
	vary, err := Get[[]string](ctx, c, varyKey)
	if err != nil {
		// Not known yet (or the store fails): this request's own response;
		// nothing is shared with another request.
		resp, streamed := m.direct(next, w, r)
		if streamed {
			return
		}
		if resp.cacheable && errors.Is(err, ErrNotFound) {
			v := splitVary(resp.Header.Values("Vary"))
			_ = Set(ctx, c, varyKey, v, TTL(24*time.Hour))
			_ = m.set(ctx, "http:"+key+variant(r, v), resp)
		}
		write(w, r, resp, false)
		return
	}
	entryKey := "http:" + key + variant(r, vary)
	var resp response
	if noCache {
		resp, err = m.revalidate(ctx, next, r, entryKey)
	} else {
		load := func(lctx context.Context) (response, error) { return m.record(next, r.Clone(lctx)) }
		var o []Option
		if m.opts.TTL > 0 {
			o = append(o, TTL(m.opts.TTL))
		}
		resp, err = GetOrLoad(ctx, c, entryKey, load, o...)
	}
	var herr *handlerError
	switch {
	case errors.As(err, &herr):
		resp = herr.resp
	case err != nil:
		// A context ended, or the cache failed: serve from the handler.
		next.ServeHTTP(w, r)
		return
	}
	if resp.TooBig {
		if resp, streamed := m.direct(next, w, r); !streamed {
			write(w, r, resp, false)
		}
		return
	}
	if resp.cacheable {
		if v := splitVary(resp.Header.Values("Vary")); !slices.Equal(v, vary) {
			// The handler changed its Vary: the entry was keyed by the old
			// one, and must not be served to other variants.
			_ = Set(ctx, c, varyKey, v, TTL(24*time.Hour))
			_ = c.Delete(ctx, entryKey)
		}
	}
	write(w, r, resp, !noCache)
}

// set caches a response as its Cache-Control says.
func (m *httpCache) set(ctx context.Context, key string, resp response) error {
	ttl := cmp.Or(resp.ttl, m.opts.TTL, m.c.opts.TTL)
	return Set(ctx, m.c, key, resp, TTL(ttl), staleFor(resp.stale))
}

// staleFor sets the stale window of one value (HTTP responses carry
// theirs).
func staleFor(d time.Duration) Option { return func(o *callOptions) { o.stale = d } }

// direct runs the handler for this request alone, buffering up to
// MaxBodySize; past it the response is streamed to w (streamed), not
// returned.
func (m *httpCache) direct(next http.Handler, w http.ResponseWriter, r *http.Request) (resp response, streamed bool) {
	rec := &recorder{header: http.Header{}, max: m.opts.MaxBodySize, pass: w}
	req := r
	if r.Method == http.MethodHead {
		req = r.Clone(r.Context())
		req.Method = http.MethodGet // cache what a GET returns
		rec.head = true
	}
	next.ServeHTTP(rec, req)
	if rec.passing {
		return response{}, true
	}
	return finish(rec), false
}

// record runs the handler for a load shared by requests: a response past
// MaxBodySize is dropped (the handler's writes fail) and the URL marked
// TooBig, so that each request streams it for itself.
func (m *httpCache) record(next http.Handler, r *http.Request) (response, error) {
	rec := &recorder{header: http.Header{}, max: m.opts.MaxBodySize}
	if r.Method == http.MethodHead {
		r.Method = http.MethodGet
	}
	next.ServeHTTP(rec, r)
	if rec.tooBig {
		return response{TooBig: true, cacheable: true, ttl: cmp.Or(m.opts.TTL, m.c.opts.TTL)}, nil
	}
	resp := finish(rec)
	if resp.Status >= 500 {
		return resp, &handlerError{resp}
	}
	return resp, nil
}

// revalidate runs the handler for the no-cache requests of entryKey,
// once for all that ask at the same time, with If-None-Match set to the
// cached copy's ETag. The cached copy is kept when the handler answers
// 304 or the same ETag; a new cacheable response replaces it.
func (m *httpCache) revalidate(ctx context.Context, next http.Handler, r *http.Request, entryKey string) (response, error) {
	m.mu.Lock()
	if rv := m.reval[entryKey]; rv != nil {
		m.mu.Unlock()
		select {
		case <-rv.done:
			return rv.resp, rv.err
		case <-ctx.Done():
			return response{}, ctx.Err()
		}
	}
	rv := &revalidation{done: make(chan struct{})}
	m.reval[entryKey] = rv
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.reval, entryKey)
		m.mu.Unlock()
		close(rv.done)
	}()
	cached, cerr := Get[response](ctx, m.c, entryKey)
	req := r.Clone(ctx)
	req.Header.Del("Cache-Control")
	req.Header.Del("If-None-Match")
	etag := ""
	if cerr == nil && !cached.TooBig {
		etag = cached.Header.Get("ETag")
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	rv.resp, rv.err = m.record(next, req)
	switch {
	case rv.err != nil || rv.resp.TooBig:
	case etag != "" && (rv.resp.Status == http.StatusNotModified || rv.resp.Header.Get("ETag") == etag):
		cached.cacheable = true
		rv.resp = cached // still valid: kept as it is
	case rv.resp.cacheable:
		_ = m.set(ctx, entryKey, rv.resp)
	}
	return rv.resp, rv.err
}

// finish turns what the recorder buffered into a response and decides
// how it may be cached.
func finish(rec *recorder) response {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	resp := response{Status: rec.status, Header: rec.header, Body: rec.body.Bytes(), Date: time.Now().UnixMilli()}
	cc := parseCacheControl(resp.Header.Get("Cache-Control"))
	resp.cacheable = cacheableStatus[resp.Status] &&
		!cc.has("no-store") && !cc.has("private") && !cc.has("no-cache") &&
		resp.Header.Get("Set-Cookie") == "" && !slices.Contains(splitVary(resp.Header.Values("Vary")), "*")
	if d, ok := cc.seconds("s-maxage"); ok {
		resp.ttl = d
	} else if d, ok := cc.seconds("max-age"); ok {
		resp.ttl = d
	}
	if resp.ttl == 0 && (cc.has("max-age") || cc.has("s-maxage")) {
		resp.cacheable = false // max-age=0: stale at once
	}
	swr, _ := cc.seconds("stale-while-revalidate")
	sie, _ := cc.seconds("stale-if-error")
	resp.stale = max(swr, sie)
	if resp.Header.Get("ETag") == "" && resp.Status == http.StatusOK {
		resp.Header.Set("ETag", contentETag(resp.Body))
	}
	return resp
}

// age is the Age header of a response produced at date (unix ms).
func age(date int64) string {
	return strconv.FormatInt(max(0, time.Now().UnixMilli()-date)/1000, 10)
}
