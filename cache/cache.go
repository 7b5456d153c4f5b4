package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is what a loader returns (or wraps) when the source has no
// value for the key: GetOrLoad caches the absence for NegativeTTL and
// returns ErrNotFound. Get returns it for a key not in the cache.
var ErrNotFound = errors.New("cache: not found")

// ErrClosed is returned after Shutdown.
var ErrClosed = errors.New("cache: shut down")

// ErrStoreUnavailable is returned by Get, Set, Delete and InvalidateTags
// while the store is failing (after an error, the store is left alone for
// StoreCooldown; GetOrLoad fails open instead).
var ErrStoreUnavailable = errors.New("cache: store unavailable")

// Options configure a [Cache]. The zero value is a working in-process
// cache with the defaults below.
type Options struct {
	// Store keeps the entries. Default: a new [MemoryStore]; use
	// [NewRedisStore] to share entries between nodes.
	Store Store
	// Codec encodes values. Default [JSON].
	Codec Codec
	// TTL is how long a loaded value is fresh. Default 5 minutes; a
	// per-call [TTL] option overrides it.
	TTL time.Duration
	// Jitter spreads expiries: each TTL is multiplied by a random factor
	// in [1-Jitter, 1+Jitter]. Default 0.1; negative: none.
	Jitter float64
	// NegativeTTL is how long a not-found answer (ErrNotFound from the
	// loader) is cached. Default 30 seconds.
	NegativeTTL time.Duration
	// StaleFor is how long after its TTL a value may still be served while
	// a background load refreshes it (stale-while-revalidate), and while
	// that load fails (stale-if-error). Default 0: an expired value is
	// never served.
	StaleFor time.Duration
	// EarlyRefresh is the XFetch factor: a value is refreshed in the
	// background before it expires, the earlier the longer its load took
	// and the larger the factor (1 is the usual choice). Default 1;
	// negative: off.
	EarlyRefresh float64
	// LoadTimeout bounds a load that runs detached from the callers who
	// wait for it (and every background refresh). Default 30 seconds.
	LoadTimeout time.Duration
	// MaxConcurrentLoads bounds the loads that run at once while the store
	// fails (fail open: the source takes the load, but not all of it at
	// once). Default 64.
	MaxConcurrentLoads int
	// Local, if set, adds an in-process tier of decoded values in front of
	// the store (no decoding and no round trip per local hit), invalidated
	// on every node through a backplane. Default: none.
	Local *LocalOptions
	// Lease, if positive, makes nodes take turns: before loading a key, a
	// node takes a lease on it in the store (for this long, at most); the
	// others wait up to Lease for the value to appear in the store instead
	// of loading it too, then load anyway. It needs a store that is a
	// [Leaser] (both of this package's are). Default 0: off (one load per
	// key per process).
	Lease time.Duration
	// StoreCooldown is how long the store is left alone after it failed,
	// so that callers do not each wait out the client's timeouts and
	// retries; then one call tries it again. Default 1 second.
	StoreCooldown time.Duration
	// Logger receives store errors. Default slog.Default().
	Logger *slog.Logger
}

// Cache is a cache-aside cache: GetOrLoad returns a cached value or loads
// it, once per key per process however many callers ask at the same time.
// It is safe for concurrent use. Background refreshes run in goroutines
// that Shutdown waits for.
type Cache struct {
	opts  Options
	store Store
	codec Codec
	log   *slog.Logger
	sem   chan struct{}
	local *local // nil without a local tier

	mu      sync.Mutex
	flights map[string]*flight
	closed  bool
	wg      sync.WaitGroup // loads and background refreshes

	hits, misses, stale, loads, loadErrors, storeErrors, waits, corrupt, bypassed, leaseWaits atomic.Int64
	loadNanos                                                                                 atomic.Int64
	storeDownUntil                                                                            atomic.Int64 // unix nanos
	lastStoreErr                                                                              atomic.Pointer[string]
}

// New returns a Cache configured by opts. It starts no goroutine.
func New(opts Options) *Cache {
	c := &Cache{opts: opts, store: opts.Store, codec: opts.Codec, log: opts.Logger, flights: make(map[string]*flight)}
	if c.store == nil {
		c.store = NewMemoryStore()
	}
	if c.codec == nil {
		c.codec = JSON
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	o := &c.opts
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	if o.Jitter == 0 {
		o.Jitter = 0.1
	}
	o.Jitter = max(0, min(o.Jitter, 1))
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 30 * time.Second
	}
	o.StaleFor = max(o.StaleFor, 0)
	if o.EarlyRefresh == 0 {
		o.EarlyRefresh = 1
	}
	if o.LoadTimeout <= 0 {
		o.LoadTimeout = 30 * time.Second
	}
	if o.MaxConcurrentLoads <= 0 {
		o.MaxConcurrentLoads = 64
	}
	if o.StoreCooldown <= 0 {
		o.StoreCooldown = time.Second
	}
	c.sem = make(chan struct{}, o.MaxConcurrentLoads)
	if o.Local != nil {
		c.local = newLocal(*o.Local)
	}
	return c
}

// Option tunes one call.
type Option func(*callOptions)

type callOptions struct {
	ttl   time.Duration
	stale time.Duration // -1: Options.StaleFor
	tags  []string
}

// TTL sets how long the value stays fresh, instead of Options.TTL.
func TTL(d time.Duration) Option { return func(o *callOptions) { o.ttl = d } }

// Tags attaches tags to the value: [Cache.InvalidateTags] of any of them
// makes it stale on every node. Pass the same tags when reading it.
func Tags(tags ...string) Option { return func(o *callOptions) { o.tags = append(o.tags, tags...) } }

func (c *Cache) callOptions(opts []Option) callOptions {
	o := callOptions{ttl: c.opts.TTL, stale: -1}
	if len(opts) > 0 {
		o = applyOptions(o, opts)
	}
	return o
}

// applyOptions is apart so that a call without options allocates nothing
// (o escapes to the option funcs).
func applyOptions(o callOptions, opts []Option) callOptions {
	p := &o
	for _, f := range opts {
		f(p)
	}
	return *p
}

// Stats are the cache's counters since New.
type Stats struct {
	LocalHits   int64 // values served by the local tier
	Hits        int64 // fresh values served by the store
	Misses      int64 // values that had to be loaded (store errors not included)
	StaleServed int64 // stale values served while refreshing, or because a load failed
	Loads       int64 // loader calls
	LoadErrors  int64 // loader calls that failed (not-found answers not included)
	StoreErrors int64 // failed store operations (the cache failed open)
	SharedWaits int64 // callers that waited for a load another caller started
	Corrupt     int64 // stored entries that could not be decoded (deleted and reloaded)
	Bypassed    int64 // store operations skipped while the store was cooling down
	LeaseWaits  int64 // loads that waited for another node's lease instead of loading
	LoadTime    time.Duration
	// LastStoreError is the message of the last store error, if any.
	LastStoreError string
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), StaleServed: c.stale.Load(), Loads: c.loads.Load(),
		LoadErrors: c.loadErrors.Load(), StoreErrors: c.storeErrors.Load(), SharedWaits: c.waits.Load(),
		Corrupt: c.corrupt.Load(), Bypassed: c.bypassed.Load(), LeaseWaits: c.leaseWaits.Load(), LoadTime: time.Duration(c.loadNanos.Load()),
	}
	if p := c.lastStoreErr.Load(); p != nil {
		s.LastStoreError = *p
	}
	if c.local != nil {
		s.LocalHits = c.local.hits.Load()
	}
	return s
}

func (c *Cache) storeFailed(op string, err error) {
	c.storeErrors.Add(1)
	c.storeDownUntil.Store(time.Now().Add(c.opts.StoreCooldown).UnixNano())
	msg := op + ": " + err.Error()
	if old := c.lastStoreErr.Swap(&msg); old == nil || *old != msg {
		c.log.Warn("cache: store error; failing open", "op", op, "err", err)
	}
}

// storeUp reports whether the store may be used; while it cools down after
// an error, the skipped operation is counted.
func (c *Cache) storeUp() bool {
	if time.Now().UnixNano() >= c.storeDownUntil.Load() {
		return true
	}
	c.bypassed.Add(1)
	return false
}

// jittered applies Jitter to d.
func (c *Cache) jittered(d time.Duration) time.Duration {
	if c.opts.Jitter == 0 {
		return d
	}
	f := 1 + c.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// GetOrLoad returns the value cached under key, or loads it with load and
// caches it. Concurrent callers for the same key share one load, which
// runs on a context detached from any one of them (cancelled when all of
// them have gone); each caller still returns when its own ctx ends.
//
// A loader that returns [ErrNotFound] (or wraps it) has the absence cached
// for NegativeTTL; GetOrLoad then returns ErrNotFound. Other loader
// errors are returned and not cached. When the store fails, GetOrLoad
// fails open: it loads from the source (at most MaxConcurrentLoads at
// once) and counts the error in [Stats].
func GetOrLoad[T any](ctx context.Context, c *Cache, key string, load func(ctx context.Context) (T, error), opts ...Option) (T, error) {
	var zero T
	o := c.callOptions(opts)
	var snap snapshot
	if c.local != nil {
		if v, ok, err := localHit[T](ctx, c, key, o); ok {
			return v, err
		}
		snap = c.local.snapshot(key, o.tags)
	}
	if f := c.joinLoad(key); f != nil {
		// A caller already missed and is loading: wait for that load
		// instead of asking the store (a stampede costs one read).
		v, err := waitLoad[T](ctx, c, key, f)
		c.fillFromLoad(key, o, f, v, err)
		return v, err
	}
	var (
		raw  []byte
		vers []int64
		err  = ErrStoreUnavailable
	)
	if c.storeUp() {
		raw, vers, err = c.store.Get(ctx, key, o.tags)
		if err != nil {
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			c.storeFailed("get", err)
		}
	}
	if err != nil {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		defer func() { <-c.sem }()
		v, _, err := awaitValue[T](ctx, c, key, load, o, nil)
		return v, err
	}
	if raw != nil {
		e, ok := c.decodeChecked(ctx, key, raw, vers)
		if ok {
			now := time.Now()
			switch {
			case now.Before(e.soft):
				c.hits.Add(1)
				if c.refreshEarly(e, now) {
					refresh(c, key, load, o, vers)
				}
				v, err := valueOf[T](c, e)
				if c.local != nil && (err == nil || e.notFound) {
					c.local.fill(key, o.tags, snap, v, e.notFound, e.soft)
				}
				return v, err
			case now.Before(e.hard):
				c.stale.Add(1)
				refresh(c, key, load, o, vers)
				return valueOf[T](c, e)
			}
		}
	}
	c.misses.Add(1)
	v, f, err := awaitValue[T](ctx, c, key, load, o, vers)
	c.fillFromLoad(key, o, f, v, err)
	return v, err
}

// fillFromLoad keeps the result of load f in the local tier, checked
// against the invalidation snapshot f took when it started (not the
// caller's: a caller who joined after an invalidation would otherwise
// keep the value read before it).
func (c *Cache) fillFromLoad(key string, o callOptions, f *flight, v any, err error) {
	notFound := errors.Is(err, ErrNotFound)
	if c.local == nil || f == nil || (err != nil && !notFound) || !slices.Equal(f.tags, o.tags) {
		return
	}
	// The stored entry's expiry is jittered around the TTL: keep the
	// local copy no longer than its shortest.
	ttl := o.ttl
	if notFound {
		ttl = c.opts.NegativeTTL
	}
	soft := time.Now().Add(time.Duration(float64(ttl) * (1 - c.opts.Jitter)))
	c.local.fill(key, o.tags, f.snap, v, notFound, soft)
}

// localHit serves key from the local tier if it holds a fresh value.
func localHit[T any](ctx context.Context, c *Cache, key string, o callOptions) (v T, ok bool, err error) {
	c.local.listen(ctx)
	e, ok := c.local.get(key, o.tags, time.Now())
	if !ok {
		return v, false, nil
	}
	if e.notFound {
		c.local.hits.Add(1)
		return v, true, ErrNotFound
	}
	if v, ok = e.val.(T); !ok {
		return v, false, nil // cached as another type: ask the store
	}
	c.local.hits.Add(1)
	return v, true, nil
}

// Get returns the fresh value cached under key, or [ErrNotFound].
func Get[T any](ctx context.Context, c *Cache, key string, opts ...Option) (T, error) {
	var zero T
	o := c.callOptions(opts)
	if !c.storeUp() {
		return zero, ErrStoreUnavailable
	}
	raw, vers, err := c.store.Get(ctx, key, o.tags)
	if err != nil {
		c.storeFailed("get", err)
		return zero, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if raw != nil {
		if e, ok := c.decodeChecked(ctx, key, raw, vers); ok && time.Now().Before(e.soft) {
			c.hits.Add(1)
			return valueOf[T](c, e)
		}
	}
	c.misses.Add(1)
	return zero, ErrNotFound
}

// Set caches v under key, fresh for the TTL.
func Set[T any](ctx context.Context, c *Cache, key string, v T, opts ...Option) error {
	o := c.callOptions(opts)
	if !c.storeUp() {
		return ErrStoreUnavailable
	}
	// The tags' current versions (the key "" holds nothing).
	_, vers, err := c.store.Get(ctx, "", o.tags)
	if err != nil {
		c.storeFailed("get", err)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	data, err := c.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("cache: encoding %q: %w", key, err)
	}
	err = c.put(ctx, key, data, false, 0, o, vers)
	if c.local != nil {
		c.local.announce(ctx, "k:"+key)
	}
	return err
}

// Delete removes keys from the cache.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if !c.storeUp() {
		return ErrStoreUnavailable
	}
	if err := c.store.Delete(ctx, keys...); err != nil {
		c.storeFailed("delete", err)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if c.local != nil {
		for _, k := range keys {
			c.local.announce(ctx, "k:"+k)
		}
	}
	return nil
}

// InvalidateTags makes every value cached with any of tags stale, on every
// node sharing the store: their next read loads them again.
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	if !c.storeUp() {
		return ErrStoreUnavailable
	}
	if err := c.store.BumpTags(ctx, tags...); err != nil {
		c.storeFailed("invalidate", err)
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if c.local != nil {
		for _, t := range tags {
			c.local.announce(ctx, "t:"+t)
		}
	}
	return nil
}

// Shutdown stops background refreshes from starting and waits for the
// loads in progress, or returns ctx's error when ctx ends first. It does
// not close the store.
func (c *Cache) Shutdown(ctx context.Context) error {
	if c.local != nil {
		c.local.close()
	}
	c.mu.Lock()
	c.closed = true
	for _, f := range c.flights {
		if f.background {
			f.cancel()
		}
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// decodeChecked decodes a stored entry, deleting it if it is corrupt or
// written with another codec, and rejecting it if a tag was invalidated
// since it was stored.
func (c *Cache) decodeChecked(ctx context.Context, key string, raw []byte, vers []int64) (entry, bool) {
	e, err := decodeEntry(raw)
	if err != nil || e.codec != c.codec.ID() {
		c.corrupt.Add(1)
		_ = c.store.Delete(ctx, key)
		return entry{}, false
	}
	if len(e.tagVers) != len(vers) {
		return entry{}, false // read with other tags than it was written with
	}
	for i, v := range vers {
		if e.tagVers[i] != v {
			return entry{}, false
		}
	}
	return e, true
}

// refreshEarly is XFetch: refresh with a probability that grows as expiry
// nears, scaled by how long the load takes.
func (c *Cache) refreshEarly(e entry, now time.Time) bool {
	if c.opts.EarlyRefresh < 0 || e.loadDur <= 0 {
		return false
	}
	// In float64: a large factor must not overflow a Duration.
	gap := float64(e.loadDur) * c.opts.EarlyRefresh * -math.Log(1-rand.Float64())
	return gap >= float64(e.soft.Sub(now))
}

func valueOf[T any](c *Cache, e entry) (T, error) {
	var v T
	if e.notFound {
		return v, ErrNotFound
	}
	if err := c.codec.Unmarshal(e.value, &v); err != nil {
		return v, fmt.Errorf("cache: decoding: %w", err)
	}
	return v, nil
}

// put stores an encoded value (or a not-found marker).
func (c *Cache) put(ctx context.Context, key string, data []byte, notFound bool, took time.Duration, o callOptions, vers []int64) error {
	ttl := o.ttl
	if notFound {
		ttl = c.opts.NegativeTTL
	}
	ttl = c.jittered(ttl)
	stale := c.opts.StaleFor
	if o.stale >= 0 {
		stale = o.stale
	}
	now := time.Now()
	e := entry{codec: c.codec.ID(), notFound: notFound, soft: now.Add(ttl), hard: now.Add(ttl + stale),
		loadDur: took, tagVers: vers, value: data}
	if len(o.tags) > 0 && vers == nil {
		e.tagVers = make([]int64, len(o.tags))
	}
	if !c.storeUp() {
		return ErrStoreUnavailable
	}
	if err := c.store.Set(ctx, key, e.encode(), ttl+stale); err != nil {
		c.storeFailed("set", err)
		return err
	}
	return nil
}
