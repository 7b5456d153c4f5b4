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
	// none, for a single process. A gap in the backplane (Redis lost
	// messages) drops the whole local tier.
	Backplane rtkit.Backplane
	// Topic is the backplane topic of invalidations. Default
	// "rtkit-cache-invalidations".
	Topic string
}

// local is the in-process tier.
type local struct {
	opts  LocalOptions
	cache *otter.Cache[string, localEntry]
	seed  maphash.Seed
	// keyVers are invalidation counters of hashed keys: a fill that read
	// the store before an invalidation of its key must not be kept.
	keyVers [4096]atomic.Uint64

	mu        sync.Mutex
	tagVers   map[string]uint64
	sub       *rtkit.Subscription
	closed    bool
	listening atomic.Bool // sub is set (or there is no backplane)

	hits atomic.Int64
}

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
	oc, err := otter.New(&otter.Options[string, localEntry]{MaximumSize: o.MaxEntries})
	if err != nil {
		panic("cache: " + err.Error()) // only for invalid sizes, which defaults rule out
	}
	return &local{opts: o, cache: oc, seed: maphash.MakeSeed(), tagVers: make(map[string]uint64)}
}

func (l *local) slot(key string) *atomic.Uint64 {
	return &l.keyVers[maphash.String(l.seed, key)%uint64(len(l.keyVers))]
}

// listen subscribes to invalidations from other nodes, once.
func (l *local) listen(ctx context.Context) {
	if l.listening.Load() {
		return
	}
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

func (l *local) dropTag(tag string) {
	l.mu.Lock()
	l.tagVers[tag]++
	l.mu.Unlock()
}

func (l *local) dropAll() {
	for i := range l.keyVers {
		l.keyVers[i].Add(1)
	}
	l.cache.InvalidateAll()
}

// announce tells every node (this one included) to drop a key ("k:") or a
// tag ("t:").
func (l *local) announce(ctx context.Context, what string) {
	if what[0] == 'k' {
		l.dropKey(what[2:])
	} else {
		l.dropTag(what[2:])
	}
	if l.opts.Backplane != nil {
		_, _ = l.opts.Backplane.Publish(ctx, l.opts.Topic, []byte(what), rtkit.PublishOptions{Ephemeral: true})
	}
}

func (l *local) snapshot(key string, tags []string) snapshot {
	s := snapshot{keyVer: l.slot(key).Load()}
	if len(tags) > 0 {
		s.tagVers = make([]uint64, len(tags))
		l.mu.Lock()
		for i, t := range tags {
			s.tagVers[i] = l.tagVers[t]
		}
		l.mu.Unlock()
	}
	return s
}

// get returns a fresh local value of key read with tags.
func (l *local) get(key string, tags []string, now time.Time) (localEntry, bool) {
	e, ok := l.cache.GetIfPresent(key)
	if !ok || !now.Before(e.expires) || len(e.tags) != len(tags) {
		return localEntry{}, false
	}
	if len(tags) > 0 {
		l.mu.Lock()
		for i, t := range tags {
			if e.tags[i] != t || l.tagVers[t] != e.tagVers[i] {
				l.mu.Unlock()
				return localEntry{}, false
			}
		}
		l.mu.Unlock()
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slot(key).Load() != snap.keyVer {
		return
	}
	for i, t := range tags {
		if l.tagVers[t] != snap.tagVers[i] {
			return
		}
	}
	// Checked and set under l.mu, which dropTag takes; a key invalidation
	// racing this Set is caught by the next get's slot check below.
	l.cache.Set(key, localEntry{val: val, notFound: notFound, expires: expires, tags: tags, tagVers: snap.tagVers})
	if l.slot(key).Load() != snap.keyVer {
		l.cache.Invalidate(key)
	}
}

func (l *local) close() {
	l.mu.Lock()
	sub := l.sub
	l.closed = true
	l.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
}
