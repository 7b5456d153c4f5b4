package cache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MiddlewareOptions configure [Middleware]. The zero value caches GET and
// HEAD responses of anonymous requests, keyed by URL path and query.
type MiddlewareOptions struct {
	// Key returns the cache key of a request, and whether it may be
	// cached at all. Default: the path and query, for requests without an
	// Authorization or Cookie header (a shared cache must not hand one
	// user's response to another); include the user in the key to cache
	// personal responses.
	Key func(r *http.Request) (key string, ok bool)
	// TTL is how long a response is fresh when it does not say (max-age
	// or s-maxage). Default: the Cache's TTL.
	TTL time.Duration
	// MaxBodySize is the largest body cached, in bytes. Default 1 MiB.
	MaxBodySize int
}

// Middleware caches the GET and HEAD responses of next in c, as HTTP
// caching middleware (func(http.Handler) http.Handler):
//
//   - Each cached response gets a strong ETag from a hash of its body
//     (unless the handler set one); If-None-Match (a list, weak
//     comparison, or *) is answered with 304 Not Modified.
//   - The handler's Cache-Control decides: no-store or private responses
//     are not cached; max-age (or s-maxage) sets the TTL;
//     stale-while-revalidate and stale-if-error (RFC 5861) let a stale
//     response be served while it is refreshed in the background, or while
//     the handler fails (5xx).
//   - Only statuses cacheable by default are cached (200, 203, 204, 300,
//     301, 308, 404, 405, 410, 414, 501), never responses that set
//     cookies, and Vary is honoured: each combination of the varied
//     request headers is its own entry (Vary: * is not cached).
//   - A request with Cache-Control: no-cache skips the cached copy (and
//     refreshes it); one with no-store is passed through.
//   - Past max-age, within the larger of stale-while-revalidate and
//     stale-if-error, the stale response is served while the handler runs
//     in the background to refresh it, and kept while that fails.
//
// Concurrent requests for the same missing entry run the handler once.
// Do not wrap streaming handlers (SSE, WebSockets): responses are
// buffered.
func Middleware(c *Cache, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if opts.Key == nil {
		opts.Key = defaultKey
	}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			key, ok := opts.Key(r)
			reqCC := parseCacheControl(r.Header.Get("Cache-Control"))
			if !ok || reqCC.has("no-store") {
				next.ServeHTTP(w, r)
				return
			}
			serveCached(c, opts, next, w, r, key, reqCC.has("no-cache"))
		})
	}
}

func defaultKey(r *http.Request) (string, bool) {
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		return "", false
	}
	return r.URL.RequestURI(), true
}

// response is a buffered response as cached.
type response struct {
	Status int         `json:"s"`
	Header http.Header `json:"h"`
	Body   []byte      `json:"b"`

	ttl, stale time.Duration
	cacheable  bool
}

func (r response) cachePolicy() (time.Duration, time.Duration, bool) {
	return r.ttl, r.stale, r.cacheable
}

func serveCached(c *Cache, opts MiddlewareOptions, next http.Handler, w http.ResponseWriter, r *http.Request, key string, revalidate bool) {
	ctx := r.Context()
	// The Vary of the last response for this URL names the request headers
	// that select the entry.
	varyKey := "http-vary:" + key
	vary, _ := Get[[]string](ctx, c, varyKey)
	entryKey := "http:" + key + variant(r, vary)
	load := func(lctx context.Context) (response, error) {
		resp := record(next, r.Clone(lctx), opts)
		if resp.Status >= 500 {
			return resp, &handlerError{resp}
		}
		return resp, nil
	}
	var resp response
	var err error
	if revalidate {
		resp, err = callLoader(ctx, load)
		if err == nil && resp.cacheable {
			ttl := cmp.Or(resp.ttl, opts.TTL, c.opts.TTL)
			_ = Set(ctx, c, entryKey, resp, TTL(ttl))
		}
	} else {
		var o []Option
		if opts.TTL > 0 {
			o = append(o, TTL(opts.TTL))
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
	if resp.cacheable {
		if v := resp.Header.Values("Vary"); !slices.Equal(splitVary(v), vary) {
			_ = Set(ctx, c, varyKey, splitVary(v), TTL(24*time.Hour))
		}
	}
	write(w, r, resp)
}

// handlerError carries a 5xx response: not cached, but served (or, within
// stale-if-error, replaced by the stale copy).
type handlerError struct{ resp response }

func (e *handlerError) Error() string {
	return "cache: handler answered " + strconv.Itoa(e.resp.Status)
}

// variant is the part of the key that the varied request headers select.
func variant(r *http.Request, vary []string) string {
	if len(vary) == 0 {
		return ""
	}
	var b strings.Builder
	for _, h := range vary {
		b.WriteString("\x00")
		b.WriteString(strings.Join(r.Header.Values(h), ","))
	}
	return b.String()
}

func splitVary(values []string) []string {
	var out []string
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if f = http.CanonicalHeaderKey(strings.TrimSpace(f)); f != "" && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out
}

var cacheableStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}

// record runs the handler into a buffer and decides how the response may
// be cached.
func record(next http.Handler, r *http.Request, opts MiddlewareOptions) response {
	rec := &recorder{header: http.Header{}, max: opts.MaxBodySize}
	if r.Method == http.MethodHead {
		// Cache what a GET returns; HEAD requests are answered from it.
		r.Method = http.MethodGet
	}
	next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	resp := response{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
	cc := parseCacheControl(resp.Header.Get("Cache-Control"))
	resp.cacheable = cacheableStatus[resp.Status] && !rec.tooBig &&
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
		sum := sha256.Sum256(resp.Body)
		resp.Header.Set("ETag", `"`+base64.RawURLEncoding.EncodeToString(sum[:18])+`"`)
	}
	return resp
}

// write serves resp, or 304 when the request's If-None-Match matches.
func write(w http.ResponseWriter, r *http.Request, resp response) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = slices.Clone(v)
	}
	etag := resp.Header.Get("ETag")
	if etag != "" && resp.Status == http.StatusOK && noneMatch(r.Header.Get("If-None-Match"), etag) {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
			h.Del(k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
}

// noneMatch reports whether an If-None-Match header matches etag, with
// the weak comparison RFC 9110 asks for (W/ prefixes ignored), or "*".
func noneMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == want {
			return true
		}
	}
	return false
}

type cacheControl map[string]string

func parseCacheControl(v string) cacheControl {
	cc := cacheControl{}
	for d := range strings.SplitSeq(v, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
			cc[name] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return cc
}

func (cc cacheControl) has(name string) bool { _, ok := cc[name]; return ok }

func (cc cacheControl) seconds(name string) (time.Duration, bool) {
	v, ok := cc[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(min(n, 1<<31)) * time.Second, true
}

// recorder buffers a response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	max    int
	tooBig bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(p) > r.max {
		r.tooBig = true
	}
	return r.body.Write(p)
}
