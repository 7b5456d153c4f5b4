package cache

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// flight is one load of a key, shared by every caller that wants it.
type flight struct {
	done       chan struct{}
	val        any
	err        error
	waiters    int
	background bool // a refresh nobody waits for
	cancel     context.CancelFunc
	// tags and snap are the tags the load was started with and the local
	// tier's invalidation snapshot taken when it started: every fill of
	// the local tier with its value is checked against that snapshot,
	// whoever joined the load and whenever, so that a caller who joins
	// after an invalidation cannot keep the value read before it.
	tags []string
	snap snapshot
}

// startLoad starts (or joins) the load of key. It returns the flight and
// whether this caller joined an existing one.
func startLoad[T any](c *Cache, ctx context.Context, key string, load func(context.Context) (T, error), o callOptions, st stored, background bool) (*flight, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		if !background {
			f.waiters++
			f.background = false
		}
		return f, true, nil
	}
	if c.closed {
		return nil, false, ErrClosed
	}
	f := &flight{done: make(chan struct{}), background: background, tags: o.tags}
	if c.local != nil {
		// Taken before the load reads the store or calls the loader.
		f.snap = c.local.snapshot(key, o.tags)
	}
	if !background {
		f.waiters = 1
	}
	// Detached from the callers (their values kept), bounded by
	// LoadTimeout; cancelled when every waiter has gone.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
	f.cancel = cancel
	c.flights[key] = f
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		f.val, f.err = runLoad(c, lctx, key, load, o, st, !background)
		c.mu.Lock()
		if c.flights[key] == f {
			delete(c.flights, key)
		}
		c.mu.Unlock()
		close(f.done)
	}()
	return f, false, nil
}

// runLoad calls the loader and stores what it returns, if the key's
// version is still st's (read before the loader was called: a Delete or
// Set since then wins).
func runLoad[T any](c *Cache, ctx context.Context, key string, load func(context.Context) (T, error), o callOptions, st stored, afterMiss bool) (val any, err error) {
	if afterMiss {
		// A load that finished between this caller's miss and this load
		// has stored the value: one more read saves a second load.
		if v, found, err := freshFromStore[T](c, ctx, key, o, &st); found {
			return v, err
		}
	}
	if release, v, done, err := leaseOrWait[T](c, ctx, key, o, &st); done {
		return v, err
	} else if release != nil {
		defer release()
	}
	c.loads.Add(1)
	start := time.Now()
	v, err := callLoader(ctx, load)
	took := time.Since(start)
	c.loadNanos.Add(int64(took))
	switch {
	case errors.Is(err, ErrNotFound):
		_ = c.put(ctx, key, nil, true, took, o, st, true)
		return nil, err
	case err != nil:
		c.loadErrors.Add(1)
		return nil, err
	}
	if p, ok := any(v).(cachePolicy); ok {
		// The value decides how it is cached (HTTP responses do).
		ttl, stale, cacheable := p.cachePolicy()
		if !cacheable {
			return v, nil
		}
		if ttl > 0 {
			o.ttl = ttl
		}
		o.stale = stale
	}
	data, merr := c.codec.Marshal(v)
	if merr != nil {
		return nil, fmt.Errorf("cache: encoding %q: %w", key, merr)
	}
	_ = c.put(ctx, key, data, false, took, o, st, true)
	return v, nil
}

// cachePolicy is implemented by values of this package that decide their
// own TTL, stale window, and whether to be cached at all.
type cachePolicy interface {
	cachePolicy() (ttl, stale time.Duration, cacheable bool)
}

// leaseOrWait takes the key's lease (release is then set: load, and
// release it), or waits for the holder's value to reach the store (done:
// here it is). Without a lease or a store that grants them, or when the
// wait runs out, the caller loads.
func leaseOrWait[T any](c *Cache, ctx context.Context, key string, o callOptions, st *stored) (release func(), v any, done bool, err error) {
	leaser, ok := c.store.(Leaser)
	if c.opts.Lease <= 0 || !ok {
		return nil, nil, false, nil
	}
	type lease struct {
		release func()
		ok      bool
	}
	l, err := storeCall(c, ctx, "lease", func(ctx context.Context) (lease, error) {
		release, ok, err := leaser.AcquireLease(ctx, key, c.opts.Lease)
		return lease{release, ok}, err
	})
	if err != nil {
		return nil, nil, false, nil
	}
	if l.ok {
		release = l.release
		// The previous holder may have stored the value between this
		// node's miss and its lease: look once more.
		if v, found, err := freshFromStore[T](c, ctx, key, o, st); found {
			release()
			return nil, v, true, err
		}
		return release, nil, false, nil
	}
	c.leaseWaits.Add(1)
	deadline := time.Now().Add(c.opts.Lease)
	for delay := 5 * time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 100*time.Millisecond) {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, nil, true, ctx.Err()
		}
		if v, found, err := freshFromStore[T](c, ctx, key, o, st); found {
			return nil, v, true, err
		}
	}
	return nil, nil, false, nil
}

// freshFromStore returns key's value if the store has it fresh;
// otherwise it updates st with what it read (still before the loader).
func freshFromStore[T any](c *Cache, ctx context.Context, key string, o callOptions, st *stored) (v any, found bool, err error) {
	cur, err := c.getEntry(ctx, key, o.tags)
	if err != nil {
		return nil, false, nil
	}
	*st = cur
	if cur.raw == nil {
		return nil, false, nil
	}
	if e, ok := c.decodeChecked(ctx, key, cur.raw, cur.tagVers); ok && time.Now().Before(e.soft) {
		v, err := valueOf[T](c, e)
		return v, true, err
	}
	return nil, false, nil
}

// callLoader runs the loader, turning a panic into an error (the load runs
// in its own goroutine, where a panic would end the process).
func callLoader[T any](ctx context.Context, load func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache: loader panicked: %v", p)
		}
	}()
	return load(ctx)
}

// joinLoad joins the load of key that a caller who missed started, if
// one runs (background refreshes are not joined: their callers were served).
func (c *Cache) joinLoad(key string) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flights[key]
	if f == nil || f.background {
		return nil
	}
	f.waiters++
	c.waits.Add(1)
	return f
}

// awaitValue loads key (sharing the load) and waits for it or ctx. The
// flight is nil when none could be started.
func awaitValue[T any](ctx context.Context, c *Cache, key string, load func(context.Context) (T, error), o callOptions, st stored) (T, *flight, error) {
	var zero T
	f, joined, err := startLoad(c, ctx, key, load, o, st, false)
	if err != nil {
		return zero, nil, err
	}
	if joined {
		c.waits.Add(1)
	}
	v, err := waitLoad[T](ctx, c, key, f)
	return v, f, err
}

// waitLoad waits for a load the caller counts as a waiter of.
func waitLoad[T any](ctx context.Context, c *Cache, key string, f *flight) (T, error) {
	var zero T
	select {
	case <-f.done:
		if f.err != nil {
			return zero, f.err
		}
		v, ok := f.val.(T)
		if !ok {
			return zero, fmt.Errorf("cache: key %q was loaded as %T, not %T", key, f.val, zero)
		}
		return v, nil
	case <-ctx.Done():
		c.mu.Lock()
		if f.waiters--; f.waiters == 0 && !f.background {
			// Nobody wants it any more: stop the load, and let the next
			// caller start afresh.
			f.cancel()
			if c.flights[key] == f {
				delete(c.flights, key)
			}
		}
		c.mu.Unlock()
		return zero, ctx.Err()
	}
}

// refresh loads key in the background unless a load is under way; the
// callers go on with the value they have.
func refresh[T any](c *Cache, key string, load func(context.Context) (T, error), o callOptions, st stored) {
	_, _, _ = startLoad(c, context.Background(), key, load, o, st, true)
}
