package cache

import (
	"bytes"
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
// HEAD responses of anonymous requests, keyed by scheme, host, path and
// query.
type MiddlewareOptions struct {
	// Key returns the cache key of a request, and whether it may be
	// cached at all. Default: scheme ("https" when r.TLS is set, else
	// "http"), host (r.Host, lower-cased) and request URI, for requests
	// without an Authorization or Cookie header (a shared cache must not
	// hand one user's response to another); include the user in the key
	// to cache personal responses. The varied request headers (Vary) are
	// added to the key by the middleware. A Key that leaves out the host
	// lets a request with a forged Host header fill the entry other hosts
	// read.
	Key func(r *http.Request) (key string, ok bool)
	// TTL is how long a response is fresh when it does not say (max-age
	// or s-maxage). Default: the Cache's TTL.
	TTL time.Duration
	// MaxBodySize is the largest body cached, in bytes. Default 1 MiB. A
	// response is buffered up to this size; past it, it is streamed to
	// the client uncached, and the URL (variant) is remembered as too
	// large for the TTL, so later requests stream straight through.
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
//   - A request with Cache-Control: no-cache is not served the cached
//     copy without revalidating it: the handler runs (once for all the
//     no-cache requests of an entry at the same time, with If-None-Match
//     set to the cached ETag); the cached copy is kept if the handler
//     answers 304 or the same ETag, replaced by a new cacheable response,
//     and kept (the new one served uncached) if the handler fails. A
//     request with no-store is passed through.
//   - Vary is learnt from responses: until the Vary of a URL is known,
//     each request runs the handler for itself (nothing is shared between
//     requests); then each combination of the varied headers is its own
//     entry, and concurrent requests for the same missing entry run the
//     handler once. A response whose Vary differs from the one learnt
//     replaces it (and its entry is not kept).
//   - Responses served from the cache carry an Age header (RFC 9111): the
//     seconds since the handler produced them.
//   - Past max-age, within the larger of stale-while-revalidate and
//     stale-if-error, the stale response is served while the handler runs
//     in the background to refresh it, and kept while that fails.
//
// Responses are buffered up to MaxBodySize: do not wrap streaming
// handlers (SSE, WebSockets), which would be held until that size.
func Middleware(c *Cache, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if opts.Key == nil {
		opts.Key = defaultKey
	}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	m := &httpCache{c: c, opts: opts, reval: make(map[string]*revalidation)}
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
			m.serve(next, w, r, key, reqCC.has("no-cache"))
		})
	}
}

func defaultKey(r *http.Request) (string, bool) {
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		return "", false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + strings.ToLower(r.Host) + r.URL.RequestURI(), true
}

// response is a buffered response as cached.
type response struct {
	Status int         `json:"s"`
	Header http.Header `json:"h"`
	Body   []byte      `json:"b"`
	Date   int64       `json:"t,omitempty"` // unix ms the handler produced it: Age
	// TooBig marks a URL whose response passed MaxBodySize: streamed, not
	// cached.
	TooBig bool `json:"x,omitempty"`

	ttl, stale time.Duration
	cacheable  bool
}

func (r response) cachePolicy() (time.Duration, time.Duration, bool) {
	return r.ttl, r.stale, r.cacheable
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

// contentETag is a strong ETag from a hash of body.
func contentETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// write serves resp, or 304 when the request's If-None-Match matches;
// with the Age header if it comes from the cache (cached).
func write(w http.ResponseWriter, r *http.Request, resp response, cached bool) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = slices.Clone(v)
	}
	if cached && resp.Date != 0 {
		h.Set("Age", age(resp.Date))
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

// recorder buffers a response up to max bytes. Past that, with pass set,
// it writes what it buffered to pass and streams the rest (passing);
// without, it drops the body and fails the handler's writes (tooBig).
type recorder struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	max     int
	tooBig  bool
	pass    http.ResponseWriter
	head    bool // the request was HEAD: nothing goes to pass's body
	passing bool
}

// errTooBig fails the writes of a handler whose response outgrew a
// shared load's buffer.
var errTooBig = errors.New("cache: response larger than MaxBodySize")

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
	if r.passing {
		if r.head {
			return len(p), nil
		}
		return r.pass.Write(p)
	}
	if r.tooBig {
		return 0, errTooBig
	}
	if r.body.Len()+len(p) <= r.max {
		return r.body.Write(p)
	}
	if r.pass == nil {
		r.tooBig = true
		r.body = bytes.Buffer{} // let it go
		return 0, errTooBig
	}
	// Stream it through, uncached.
	r.passing = true
	h := r.pass.Header()
	for k, v := range r.header {
		h[k] = v
	}
	r.pass.WriteHeader(r.status)
	if !r.head {
		if _, err := r.pass.Write(r.body.Bytes()); err != nil {
			return 0, err
		}
	}
	r.body = bytes.Buffer{}
	if r.head {
		return len(p), nil
	}
	return r.pass.Write(p)
}
