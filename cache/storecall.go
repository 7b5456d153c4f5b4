package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// firstCallTimeout bounds the store calls made before one has succeeded
// (they may include dialing), if StoreTimeout is shorter.
const firstCallTimeout = time.Second

// errStoreTimeout is a store call that outlived its StoreTimeout.
var errStoreTimeout = errors.New("cache: store call timed out")

// storeCall runs one store operation: skipped (ErrStoreUnavailable) while
// the store cools down after a failure, bounded by StoreTimeout (and by
// half of what is left of ctx, so that a caller failing open still has
// time to load), and recorded: a failure, a timeout included, starts the
// cooldown (except a timeout while other calls succeed: queued, not
// hung); a success ends it.
//
// The bound holds whatever the client does with contexts (go-redis, by
// default, waits out its ReadTimeout and retries): the operation runs in
// a goroutine that is abandoned, not stopped, on timeout; it ends when
// the client gives up, and Shutdown waits for it. A MemoryStore, which
// never blocks, is called directly.
func storeCall[R any](c *Cache, ctx context.Context, op string, f func(ctx context.Context) (R, error)) (R, error) {
	if !c.storeUp() {
		var zero R
		return zero, ErrStoreUnavailable
	}
	var start int64
	if !c.direct {
		start = time.Now().UnixNano()
	}
	r, err := bounded(c, ctx, f)
	switch {
	case err == nil:
		c.storeOK()
	case ctx.Err() != nil:
		return r, ctx.Err() // the caller gave up: says nothing about the store
	case errors.Is(err, errStoreTimeout) && c.lastOK.Load() > start:
		// Another call succeeded meanwhile: the store answers, this call
		// queued behind others (a burst on a small connection pool). The
		// caller fails open; the store is not cooled down.
		c.storeErrors.Add(1)
	default:
		c.storeFailed(op, err)
	}
	return r, err
}

type result[R any] struct {
	r   R
	err error
}

func bounded[R any](c *Cache, ctx context.Context, f func(ctx context.Context) (R, error)) (R, error) {
	if c.direct {
		return f(ctx)
	}
	var zero R
	d := c.opts.StoreTimeout
	if c.lastOK.Load() == 0 {
		// No call has succeeded yet: this one may be dialing the store.
		d = max(d, firstCallTimeout)
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/2)
	}
	if !c.track() {
		return zero, ErrClosed
	}
	sctx, cancel := context.WithTimeout(ctx, d)
	done := make(chan result[R], 1)
	go func() {
		defer c.storeCalls.Done()
		defer cancel()
		r, err := f(sctx)
		done <- result[R]{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-sctx.Done():
		// The call may have finished (and cancelled sctx) just now.
		select {
		case res := <-done:
			return res.r, res.err
		default:
		}
		if err := ctx.Err(); err != nil {
			return zero, err
		}
		return zero, fmt.Errorf("%w after %v", errStoreTimeout, d)
	}
}

// track counts a store call for Shutdown to wait for; false after
// Shutdown.
func (c *Cache) track() bool {
	c.callsMu.RLock()
	defer c.callsMu.RUnlock()
	if c.callsClosed {
		return false
	}
	c.storeCalls.Add(1)
	return true
}

// storeFailed starts (or restarts) the cooldown.
func (c *Cache) storeFailed(op string, err error) {
	c.storeErrors.Add(1)
	c.storeDownUntil.Store(time.Now().Add(c.opts.StoreCooldown).UnixNano())
	msg := op + ": " + err.Error()
	if old := c.lastStoreErr.Swap(&msg); old == nil || *old != msg {
		c.log.Warn("cache: store error; failing open", "op", op, "err", err)
	}
}

func (c *Cache) storeOK() {
	if !c.direct {
		if now := time.Now().UnixNano(); now-c.lastOK.Load() > int64(time.Millisecond) {
			c.lastOK.Store(now)
		}
	}
	if until := c.storeDownUntil.Load(); until != 0 {
		c.storeDownUntil.CompareAndSwap(until, 0)
	}
}

// storeUp reports whether the store may be used. While it cools down
// after a failure, it may not (the skipped operation is counted); when
// the cooldown is over, one caller probes it (for up to StoreTimeout)
// while the others still skip it.
func (c *Cache) storeUp() bool {
	until := c.storeDownUntil.Load()
	if until == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if now >= until && c.storeDownUntil.CompareAndSwap(until, now+int64(c.opts.StoreTimeout)) {
		return true // the probe
	}
	c.bypassed.Add(1)
	return false
}

// getEntry reads key's entry, its version (0 for a store that is not a
// VersionedStore) and its tags' versions.
func (c *Cache) getEntry(ctx context.Context, key string, tags []string) (stored, error) {
	return storeCall(c, ctx, "get", func(ctx context.Context) (stored, error) {
		var s stored
		var err error
		if c.vstore != nil {
			s.raw, s.ver, s.tagVers, err = c.vstore.GetVersioned(ctx, key, tags)
		} else {
			s.raw, s.tagVers, err = c.store.Get(ctx, key, tags)
		}
		return s, err
	})
}

// sharedRead is getEntry, shared by the callers that read the same key
// (with the same tags) at the same time: a burst of misses on a key costs
// one read, not one per caller queued on the client's connection pool
// (where each would risk its StoreTimeout). A caller whose reader gave up
// (its context ended) reads for itself. A MemoryStore is read directly.
func (c *Cache) sharedRead(ctx context.Context, key string, tags []string) (stored, error) {
	if c.direct {
		return c.getEntry(ctx, key, tags)
	}
	c.mu.Lock()
	if r := c.reads[key]; r != nil && slices.Equal(r.tags, tags) {
		c.mu.Unlock()
		select {
		case <-r.done:
			if !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, context.DeadlineExceeded) {
				return r.st, r.err
			}
		case <-ctx.Done():
			return stored{}, ctx.Err()
		}
		return c.getEntry(ctx, key, tags)
	}
	r := &readFlight{done: make(chan struct{}), tags: tags}
	if c.reads[key] == nil {
		c.reads[key] = r
	}
	c.mu.Unlock()
	r.st, r.err = c.getEntry(ctx, key, tags)
	c.mu.Lock()
	if c.reads[key] == r {
		delete(c.reads, key)
	}
	c.mu.Unlock()
	close(r.done)
	return r.st, r.err
}

// readFlight is a read of the store shared by callers (sharedRead).
type readFlight struct {
	done chan struct{}
	tags []string
	st   stored
	err  error
}

// stored is what a read of the store returned.
type stored struct {
	raw     []byte // nil: no entry
	ver     uint64
	tagVers []int64
}

// setEntry stores an encoded entry: a loaded value only if the key's
// version is still ver (cond), any other unconditionally.
func (c *Cache) setEntry(ctx context.Context, key string, data []byte, ttl time.Duration, cond bool, ver uint64) error {
	_, err := storeCall(c, ctx, "set", func(ctx context.Context) (struct{}, error) {
		if cond && c.vstore != nil {
			_, err := c.vstore.SetIfVersion(ctx, key, data, ttl, ver)
			return struct{}{}, err
		}
		return struct{}{}, c.store.Set(ctx, key, data, ttl)
	})
	return err
}

// storeDo runs an operation without a result.
func (c *Cache) storeDo(ctx context.Context, op string, f func(ctx context.Context) error) error {
	_, err := storeCall(c, ctx, op, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}
