package cache

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/rtkit/rtkit"
)

// LocalOptions configure the in-process tier of a [Cache]: decoded values
// kept in this process, in front of the store.
type LocalOptions struct {
	// MaxEntries bounds the local tier (otter's S3-FIFO eviction). Default
	// 10,000.
	MaxEntries int
	// MaxStaleness bounds how long a local value is used without checking
	// the store: the backstop for invalidations that never arrive.
	// Default 1 minute.
	MaxStaleness time.Duration
	// Backplane carries invalidations between nodes (Set, Delete and
	// InvalidateTags on one node drop the local copies on all). Default:
	// none, for a single process. Invalidations are kept in the topic's
	// history (the backplane's HistorySize and HistoryTTL, or its
	// TopicHistory for Topic: a few hundred entries are plenty), so that a
	// node whose subscription was interrupted reads those it missed; a gap
	// in the backplane (Redis lost messages, or more were published
	// meanwhile than the history holds) drops the whole local tier. With
	// no history for Topic, invalidations published while a node
	// resubscribes are lost to it until MaxStaleness.
	Backplane rtkit.Backplane
	// Topic is the backplane topic of invalidations. Default
	// "rtkit-cache-invalidations".
	Topic string
}

// localClockResolution is how often the local tier reads the time: a
// local value expires up to this much late.
const localClockResolution = 10 * time.Millisecond

// localSlots is the size of the local tier's tables of invalidation
// counters (of keys, and of tags).
const localSlots = 4096

// local is the in-process tier.
type local struct {
	opts  LocalOptions
	cache *otter.Cache[string, *localEntry]
	clock *otter.CoarseClock
	seed  maphash.Seed
	// keyVers and tagVers are invalidation counters of hashed keys and
	// tags: a fill that read the store before an invalidation of its key
	// or a tag must not be kept, and a local value whose tag was
	// invalidated is not served. Fixed tables, so that memory does not
	// grow with the number of keys and tags ever invalidated; keys or tags
	// that share a counter are invalidated together (a reload, harmless).
	keyVers [localSlots]atomic.Uint64
	tagVers [localSlots]atomic.Uint64

	mu        sync.Mutex
	sub       *rtkit.Subscription
	closed    bool
	listening atomic.Bool // sub is set (or there is no backplane)

	hits atomic.Int64
}

// localEntry is a value of the local tier (by pointer: a hit copies a
// word, not the entry).
type localEntry struct {
	val      any
	notFound bool
	expires  time.Time
	tags     []string
	tagVers  []uint64
}

// snapshot is what a fill is checked against.
type snapshot struct {
	keyVer  uint64
	tagVers []uint64
}

func newLocal(o LocalOptions) *local {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = time.Minute
	}
	if o.Topic == "" {
		o.Topic = "rtkit-cache-invalidations"
	}
	// otter checks expiry against a coarse clock (read by a goroutine
	// every localClockResolution): a hit does not read the time.
	clock := otter.NewCoarseClock(localClockResolution)
	oc, err := otter.New(&otter.Options[string, *localEntry]{
		MaximumSize: o.MaxEntries,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *localEntry]) time.Duration {
			return time.Until(e.Value.expires)
		}),
		Clock: clock,
	})
	if err != nil {
		panic("cache: " + err.Error()) // only for invalid sizes, which defaults rule out
	}
	return &local{opts: o, cache: oc, clock: clock, seed: maphash.MakeSeed()}
}

func (l *local) slot(key string) *atomic.Uint64 {
	return &l.keyVers[maphash.String(l.seed, key)%localSlots]
}

func (l *local) tagSlot(tag string) *atomic.Uint64 {
	return &l.tagVers[maphash.String(l.seed, tag)%localSlots]
}

// listen subscribes to invalidations from other nodes, once.
func (l *local) listen(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.Backplane == nil {
		l.listening.Store(true)
		return
	}
	if l.sub != nil || l.closed {
		return
	}
	sub, err := l.opts.Backplane.Subscribe(ctx, l.opts.Topic, rtkit.SubscribeOptions{}, l)
	if err == nil {
		l.sub = sub
		l.listening.Store(true)
	}
}

// HandleMessage applies an invalidation from any node.
func (l *local) HandleMessage(m *rtkit.Message) {
	msg := string(m.Data)
	switch {
	case strings.HasPrefix(msg, "k:"):
		l.dropKey(msg[2:])
	case strings.HasPrefix(msg, "t:"):
		l.dropTag(msg[2:])
	case msg == "*":
		l.dropAll()
	}
}

// HandleGap drops everything: invalidations may have been lost.
func (l *local) HandleGap(rtkit.ID) { l.dropAll() }

func (l *local) dropKey(key string) {
	l.slot(key).Add(1)
	l.cache.Invalidate(key)
}

func (l *local) dropTag(tag string) { l.tagSlot(tag).Add(1) }

func (l *local) dropAll() {
	for i := range l.keyVers {
		l.keyVers[i].Add(1)
	}
	l.cache.InvalidateAll()
}

// announce tells every node (this one included) to drop a key ("k:") or a
// tag ("t:"). Not ephemeral: a node whose subscription was interrupted
// (a reconnect, a Cluster failover moving it to the new primary) reads the
// invalidations it missed from the topic's history, or gets a gap and
// drops everything.
func (l *local) announce(ctx context.Context, what string) {
	if what[0] == 'k' {
		l.dropKey(what[2:])
	} else {
		l.dropTag(what[2:])
	}
	if l.opts.Backplane != nil {
		_, _ = l.opts.Backplane.Publish(ctx, l.opts.Topic, []byte(what), rtkit.PublishOptions{})
	}
}

func (l *local) snapshot(key string, tags []string) snapshot {
	s := snapshot{keyVer: l.slot(key).Load()}
	if len(tags) > 0 {
		s.tagVers = make([]uint64, len(tags))
		for i, t := range tags {
			s.tagVers[i] = l.tagSlot(t).Load()
		}
	}
	return s
}

// get returns a fresh local value of key read with tags.
func (l *local) get(key string, tags []string) (*localEntry, bool) {
	e, ok := l.cache.GetIfPresent(key) // not expired (otter checks)
	if !ok || len(e.tags) != len(tags) {
		return nil, false
	}
	for i, t := range tags {
		if e.tags[i] != t || l.tagSlot(t).Load() != e.tagVers[i] {
			return nil, false
		}
	}
	return e, true
}

// fill keeps a value read or loaded from the store, unless its key or one
// of its tags was invalidated since snap was taken.
func (l *local) fill(key string, tags []string, snap snapshot, val any, notFound bool, soft time.Time) {
	expires := soft
	if limit := time.Now().Add(l.opts.MaxStaleness); limit.Before(expires) {
		expires = limit
	}
	if !l.unchanged(key, tags, snap) {
		return
	}
	l.cache.Set(key, &localEntry{val: val, notFound: notFound, expires: expires, tags: tags, tagVers: snap.tagVers})
	// An invalidation racing the Set: a tag's is caught by every get (it
	// compares the tag counters with the entry's); a key's either counted
	// before this check, or drops the key after the Set.
	if !l.unchanged(key, tags, snap) {
		l.cache.Invalidate(key)
	}
}

// unchanged reports whether neither key nor a tag was invalidated since
// snap.
func (l *local) unchanged(key string, tags []string, snap snapshot) bool {
	if l.slot(key).Load() != snap.keyVer {
		return false
	}
	for i, t := range tags {
		if l.tagSlot(t).Load() != snap.tagVers[i] {
			return false
		}
	}
	return true
}

func (l *local) close() {
	l.mu.Lock()
	sub := l.sub
	l.closed = true
	l.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
	l.cache.StopAllGoroutines()
	l.clock.Stop()
}
