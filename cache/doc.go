// Package cache is a cache-aside cache with a memory or a Redis store.
//
// [GetOrLoad] returns the cached value of a key or loads it, once per key
// per process however many callers ask at the same time:
//
//	c := cache.New(cache.Options{Store: cache.NewRedisStore(rdb, "myapp:cache:")})
//	user, err := cache.GetOrLoad(ctx, c, "user:42", func(ctx context.Context) (User, error) {
//		return db.User(ctx, 42) // return cache.ErrNotFound (wrapped) for "no such user"
//	}, cache.Tags("user:42"))
//	...
//	c.InvalidateTags(ctx, "user:42") // after an update: stale on every node
//
// # Entries
//
// Every stored entry carries a small versioned envelope: format version,
// codec, soft and hard expiry, how long its load took, a not-found flag
// and the versions of its tags. So these work on Redis as in memory:
//
//   - negative caching: a loader's [ErrNotFound] is cached for NegativeTTL;
//   - TTL jitter, so that keys loaded together do not expire together;
//   - early refresh (XFetch): a value is refreshed in the background
//     before it expires, earlier for values that are slow to load;
//   - stale-while-revalidate and stale-if-error within StaleFor;
//   - tag invalidation by per-tag version counters, checked on every read
//     in the same round trip as the entry: atomic, and safe on Redis
//     Cluster (no KEYS, no sets of members);
//   - corrupt entries, or entries of another codec, are deleted and
//     reloaded, never returned.
//
// # Writes that race a load
//
// A load that read the store before a [Cache.Delete] or [Set] of its key
// (and so may have read the source before the write) does not store
// what it loaded over the write: both of this package's stores are
// [VersionedStore]s, which version each key, and a loaded value is
// stored only if its key's version is still the one read before the
// loader was called. Delete leaves a small tombstone with the new
// version for [DeleteGuard] (1 hour), so a load that takes up to that
// long cannot undo it. The caller of such a load still gets the value it
// loaded; the next read loads again. The local tier follows the same
// rule: a fill is checked against the invalidations counted since the
// load started, whoever joined it.
//
// # Bounds
//
//   - [MemoryStore]: [MemoryOptions.MaxBytes], 64 MiB by default,
//     counting each entry's key, bytes and 64 bytes of bookkeeping;
//     beyond it, entries are evicted (otter, S3-FIFO). Expired entries are
//     never returned and go when evicted or overwritten. Tag versions are
//     16,384 counters that tags are hashed onto (fixed memory; tags that
//     share a counter are invalidated together).
//   - local tier: [LocalOptions.MaxEntries] values (10,000 by default),
//     and 4,096 invalidation counters each for hashed keys and tags
//     (fixed memory, however many keys and tags are invalidated).
//   - [RedisStore]: entries expire with their TTL (plus StaleFor);
//     tombstones after [DeleteGuard]; tag counters are kept (one small
//     key per tag ever invalidated).
//
// # Tiers
//
// With [Options.Local], decoded values are also kept in process (otter),
// so a local hit neither decodes nor leaves the process (0 allocations).
// Writes, deletes and tag invalidations on any node drop the local copies
// on every node within milliseconds through an [rtkit.Backplane]; a fill
// that read the store before an invalidation is discarded (per-key and
// per-tag versions), and MaxStaleness bounds how long a local copy is
// trusted if invalidations are lost (a backplane gap drops them all).
//
// On a Redis Cluster with replicas, invalidations keep flowing after the
// primary of their topic fails over: in TestLocalTierInvalidatedAfterClusterFailover
// (cluster-node-timeout 2s) a write on one node dropped another node's
// local copy 4.5s after the primary was SIGKILLed. Invalidations are not
// ephemeral: those published while a node's subscription moves to the new
// primary are read from the topic's history when it gets there (in
// TestLocalTierKeepsInvalidationsAcrossClusterFailover, every one of the
// 40 keys written one by one from the kill to a second after the
// promotion reached the other node; published ephemeral, as before, 13
// were lost to it). An invalidation the old primary acknowledged and lost
// before its replica had it is lost without a gap report, as any
// backplane message is (see rtkit.RedisOptions.MinReplicas): the copy
// stays until the next invalidation of the key or MaxStaleness.
//
// The Redis store's own keys on the failed primary fail (fail open) until
// the client's slot map is refreshed: share the client with an
// rtkit.RedisBackplane, which refreshes it after connection errors, or
// go-redis does so only once a minute.
//
// # HTTP
//
// [Middleware] caches GET and HEAD responses with strong ETags, 304s,
// Vary, Cache-Control from the handler and the request, RFC 5861's
// stale-while-revalidate and stale-if-error, and an Age header on cached
// responses. Entries are keyed by scheme, host and request URI (a forged
// Host header fills only its own entry) and by the varied request
// headers; until the Vary of a URL is known, nothing is shared between
// requests. A request's Cache-Control: no-cache revalidates the entry
// (one handler run for all such requests at once) instead of replacing
// it. Bodies are buffered up to MaxBodySize (1 MiB by default) and
// streamed uncached past it.
//
// # Stampedes and failures
//
// Concurrent callers of a key share one load, which runs on a context
// detached from any of them and is cancelled only when all of them have
// gone; each caller still returns when its own context ends. With
// [Options.Lease], nodes take turns too: one loads, the others wait for its
// value in the store.
//
// When the store fails or hangs, GetOrLoad fails open. Every store call
// is bounded by [Options.StoreTimeout] (250 ms by default, and at most
// half of what is left of the caller's deadline), whatever the Redis
// client's own timeouts; a call that fails or times out counts in
// [Stats] (never as a miss), and GetOrLoad loads from the source (joining
// a load under way, or at most MaxConcurrentLoads at once) within the
// caller's deadline. The store is then left alone for StoreCooldown (1
// second by default): calls skip it (Stats.Bypassed; Get, Set, Delete and
// InvalidateTags return [ErrStoreUnavailable]). After the cooldown one
// call probes the store while the others still skip it; its success ends
// the cooldown, its failure starts another.
package cache
