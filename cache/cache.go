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
	// StoreTimeout bounds every store call (read, write, delete, tag
	// invalidation, lease), and at most half of what is left of the
	// caller's context, so that a caller failing open still has time to
	// load. A call that takes longer fails: it counts as a store error
	// and starts the cooldown (unless another store call succeeded
	// meanwhile: then it was queued behind others, not held by a hung
	// store), and GetOrLoad loads from the source. The bound holds
	// whatever the client does with contexts; the call itself is
	// abandoned, not stopped (see [Cache.Shutdown]). Until a store call
	// has succeeded (the first ones may dial), the bound is at least 1
	// second. Default 250 milliseconds. MemoryStore calls, which never
	// block, are not bounded.
	StoreTimeout time.Duration
	// StoreCooldown is how long the store is left alone after it failed
	// (or timed out), so that callers do not each wait for it; then one
	// call probes it (the others keep skipping it until that call
	// succeeds, fails, or outlives StoreTimeout). Default 1 second.
	StoreCooldown time.Duration
	// Logger receives store errors. Default slog.Default().
	Logger *slog.Logger
}

// Cache is a cache-aside cache: GetOrLoad returns a cached value or loads
// it, once per key per process however many callers ask at the same time.
// It is safe for concurrent use. Background refreshes run in goroutines
// that Shutdown waits for.
type Cache struct {
	opts   Options
	store  Store
	vstore VersionedStore // store, if it is one
	direct bool           // store is a MemoryStore: calls need no bound
	codec  Codec
	log    *slog.Logger
	sem    chan struct{}
	local  *local // nil without a local tier

	mu      sync.Mutex
	flights map[string]*flight
	reads   map[string]*readFlight
	closed  bool
	wg      sync.WaitGroup // loads and background refreshes

	callsMu     sync.RWMutex
	callsClosed bool
	storeCalls  sync.WaitGroup // store calls (see storeCall)

	hits, misses, stale, loads, loadErrors, storeErrors, waits, corrupt, bypassed, leaseWaits atomic.Int64
	loadNanos                                                                                 atomic.Int64
	storeDownUntil                                                                            atomic.Int64 // unix nanos
	lastOK                                                                                    atomic.Int64 // unix nanos of a recent successful store call (±1 ms)
	lastStoreErr                                                                              atomic.Pointer[string]
}

// New returns a Cache configured by opts. It starts no goroutine.
func New(opts Options) *Cache {
	c := &Cache{opts: opts, store: opts.Store, codec: opts.Codec, log: opts.Logger, flights: make(map[string]*flight), reads: make(map[string]*readFlight)}
	if c.store == nil {
		c.store = NewMemoryStore(MemoryOptions{})
	}
	c.vstore, _ = c.store.(VersionedStore)
	_, c.direct = c.store.(*MemoryStore)
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
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 250 * time.Millisecond
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
	if len(opts) == 0 {
		return callOptions{ttl: c.opts.TTL, stale: -1}
	}
	return applyOptions(callOptions{ttl: c.opts.TTL, stale: -1}, opts)
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
		if v, ok, err := localHit[T](ctx, c, key, &o); ok {
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
	st, err := c.sharedRead(ctx, key, o.tags)
	if err != nil {
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		// Fail open: load from the source, within the caller's deadline
		// (joining a load under way costs the source nothing).
		if f := c.joinLoad(key); f != nil {
			return waitLoad[T](ctx, c, key, f)
		}
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		defer func() { <-c.sem }()
		v, _, err := awaitValue[T](ctx, c, key, load, o, stored{})
		return v, err
	}
	if st.raw != nil {
		e, ok := c.decodeChecked(ctx, key, st.raw, st.tagVers)
		if ok {
			now := time.Now()
			switch {
			case now.Before(e.soft):
				c.hits.Add(1)
				if c.refreshEarly(e, now) {
					refresh(c, key, load, o, st)
				}
				v, err := valueOf[T](c, e)
				if c.local != nil && (err == nil || e.notFound) {
					c.local.fill(key, o.tags, snap, v, e.notFound, e.soft)
				}
				return v, err
			case now.Before(e.hard):
				c.stale.Add(1)
				refresh(c, key, load, o, st)
				return valueOf[T](c, e)
			}
		}
	}
	c.misses.Add(1)
	v, f, err := awaitValue[T](ctx, c, key, load, o, st)
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
func localHit[T any](ctx context.Context, c *Cache, key string, o *callOptions) (v T, ok bool, err error) {
	if !c.local.listening.Load() {
		c.local.listen(ctx)
	}
	e, ok := c.local.get(key, o.tags)
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
	st, err := c.getEntry(ctx, key, o.tags)
	if err != nil {
		return zero, unavailable(ctx, err)
	}
	if st.raw != nil {
		if e, ok := c.decodeChecked(ctx, key, st.raw, st.tagVers); ok && time.Now().Before(e.soft) {
			c.hits.Add(1)
			return valueOf[T](c, e)
		}
	}
	c.misses.Add(1)
	return zero, ErrNotFound
}

// Set caches v under key, fresh for the TTL, and drops the local copies
// of key on every node. With a [VersionedStore], a load of key that
// started before Set does not store its value over v.
func Set[T any](ctx context.Context, c *Cache, key string, v T, opts ...Option) error {
	o := c.callOptions(opts)
	data, err := c.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("cache: encoding %q: %w", key, err)
	}
	var st stored
	if len(o.tags) > 0 {
		// The tags' current versions (the key "" holds nothing).
		if st, err = c.getEntry(ctx, "", o.tags); err != nil {
			return unavailable(ctx, err)
		}
	}
	err = c.put(ctx, key, data, false, 0, o, st, false)
	if c.local != nil {
		c.local.announce(ctx, "k:"+key)
	}
	return err
}

// Delete removes keys from the cache, and from the local tier of every
// node. With a [VersionedStore] (both of this package's stores), a load
// of a key that started before Delete (and ends within [DeleteGuard])
// does not store the value it loaded, so the next read loads again; a
// local copy of a value loaded before Delete is not kept either. With
// another store, a load racing Delete may store its older value for its
// TTL.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if err := c.storeDo(ctx, "delete", func(ctx context.Context) error { return c.store.Delete(ctx, keys...) }); err != nil {
		return unavailable(ctx, err)
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
	if err := c.storeDo(ctx, "invalidate", func(ctx context.Context) error { return c.store.BumpTags(ctx, tags...) }); err != nil {
		return unavailable(ctx, err)
	}
	if c.local != nil {
		for _, t := range tags {
			c.local.announce(ctx, "t:"+t)
		}
	}
	return nil
}

// Shutdown stops background refreshes from starting and waits for the
// loads in progress and for store calls that outlived their
// StoreTimeout (they end when the store's client gives up), or returns
// ctx's error when ctx ends first. It does not close the store. After
// Shutdown, calls that need a load or a store call return [ErrClosed].
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
		// Loads make store calls: no new one can start after them.
		c.callsMu.Lock()
		c.callsClosed = true
		c.callsMu.Unlock()
		c.storeCalls.Wait()
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
		_ = c.storeDo(ctx, "delete", func(ctx context.Context) error { return c.store.Delete(ctx, key) })
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

// put stores an encoded value (or a not-found marker). A loaded value
// (cond) is stored only if the key's version is still st's.
func (c *Cache) put(ctx context.Context, key string, data []byte, notFound bool, took time.Duration, o callOptions, st stored, cond bool) error {
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
		loadDur: took, tagVers: st.tagVers, value: data}
	if len(o.tags) > 0 && st.tagVers == nil {
		e.tagVers = make([]int64, len(o.tags))
	}
	return c.setEntry(ctx, key, e.encode(), ttl+stale, cond, st.ver)
}

// unavailable is the error of a store operation that failed: ctx's if it
// ended, ErrStoreUnavailable (wrapping the cause) otherwise.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrStoreUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}
