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
// local copy 4.5s after the primary was SIGKILLed. Invalidations published
// while a node's subscription is moving to the new primary are ephemeral
// and lost to that node: its copy stays until the next invalidation of the
// key or MaxStaleness. The Redis store's own keys on the failed primary
// fail (fail open) until the client's slot map is refreshed: share the
// client with an rtkit.RedisBackplane, which refreshes it after connection
// errors, or go-redis does so only once a minute.
//
// # HTTP
//
// [Middleware] caches GET and HEAD responses with strong ETags, 304s,
// Vary, Cache-Control from the handler and the request, and RFC 5861's
// stale-while-revalidate and stale-if-error.
//
// # Stampedes and failures
//
// Concurrent callers of a key share one load, which runs on a context
// detached from any of them and is cancelled only when all of them have
// gone; each caller still returns when its own context ends. With
// [Options.Lease], nodes take turns too: one loads, the others wait for its
// value in the store. When the store
// fails, GetOrLoad fails open: it loads from the source (at most
// MaxConcurrentLoads at once), leaves the store alone for StoreCooldown so
// that callers do not each wait out the client's retries, and counts the
// error in [Stats] (never as a miss); then it tries the store again.
package cache
