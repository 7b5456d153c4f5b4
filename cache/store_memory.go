package cache

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// MemoryOptions configure a [MemoryStore]. The zero value is ready to use.
type MemoryOptions struct {
	// MaxBytes bounds the store: the sum over entries of the key's and
	// the encoded entry's length plus 64 bytes of bookkeeping. When a
	// write would pass it, entries are evicted (otter's S3-FIFO, which
	// keeps the frequently read ones). Default 64 MiB.
	MaxBytes int64
}

// entryOverhead is what an entry of a MemoryStore weighs beyond its key
// and bytes (map slot, expiry, version).
const entryOverhead = 64

// tagSlots is the number of tag version counters of a MemoryStore: tags
// are hashed onto them, so that the store's memory does not grow with the
// number of tags ever invalidated. Tags that share a counter are
// invalidated together (harmless: a reload).
const tagSlots = 1 << 14

// MemoryStore is the in-process [Store]: entries with their expiry in an
// otter cache bounded in bytes ([MemoryOptions.MaxBytes]), and tag
// versions in a fixed table of counters. Expired entries are not returned;
// they go when evicted or overwritten. It is a [VersionedStore] and a
// [Leaser] (within the process). It starts no goroutine.
type MemoryStore struct {
	entries *otter.Cache[string, memEntry]
	seed    maphash.Seed
	// floors hold, per hash of key, the highest version of an entry or
	// tombstone removed (evicted): the version of an absent key, so that
	// an eviction never turns a changed version back into one a load read.
	floors [256]atomic.Uint64
	gen    atomic.Uint64 // versions of Set and Delete
	tags   [tagSlots]atomic.Int64

	leaseMu sync.Mutex
	leases  map[string]time.Time
}

type memEntry struct {
	data    []byte // nil: a tombstone (Delete)
	expires time.Time
	version uint64
}

var (
	_ VersionedStore = (*MemoryStore)(nil)
	_ Leaser         = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	s := &MemoryStore{seed: maphash.MakeSeed(), leases: make(map[string]time.Time)}
	s.gen.Store(rand.Uint64N(1 << 62)) // versions differ from a previous process's
	oc, err := otter.New(&otter.Options[string, memEntry]{
		MaximumWeight: uint64(opts.MaxBytes),
		Weigher: func(k string, e memEntry) uint32 {
			return uint32(min(len(k)+len(e.data)+entryOverhead, 1<<32-1))
		},
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, memEntry]) {
			if ev.Cause != otter.CauseReplacement {
				s.raiseFloor(ev.Key, ev.Value.version)
			}
		},
	})
	if err != nil {
		panic("cache: " + err.Error()) // only for invalid options, which defaults rule out
	}
	s.entries = oc
	return s
}

func (s *MemoryStore) floor(key string) *atomic.Uint64 {
	return &s.floors[maphash.String(s.seed, key)%uint64(len(s.floors))]
}

func (s *MemoryStore) raiseFloor(key string, v uint64) {
	f := s.floor(key)
	for {
		old := f.Load()
		if v <= old || f.CompareAndSwap(old, v) {
			return
		}
	}
}

func (s *MemoryStore) tagVersions(tags []string) []int64 {
	if len(tags) == 0 {
		return nil
	}
	vers := make([]int64, len(tags))
	for i, t := range tags {
		vers[i] = s.tags[maphash.String(s.seed, t)%tagSlots].Load()
	}
	return vers
}

// Get implements [Store.Get].
func (s *MemoryStore) Get(ctx context.Context, key string, tags []string) ([]byte, []int64, error) {
	data, _, vers, err := s.GetVersioned(ctx, key, tags)
	return data, vers, err
}

// GetVersioned implements [VersionedStore.GetVersioned].
func (s *MemoryStore) GetVersioned(_ context.Context, key string, tags []string) ([]byte, uint64, []int64, error) {
	vers := s.tagVersions(tags)
	e, ok := s.entries.GetIfPresent(key)
	if !ok {
		return nil, s.floor(key).Load(), vers, nil
	}
	if e.data == nil || !time.Now().Before(e.expires) {
		return nil, e.version, vers, nil
	}
	return e.data, e.version, vers, nil
}

// Set implements [Store.Set]: the key gets a new version.
func (s *MemoryStore) Set(_ context.Context, key string, data []byte, ttl time.Duration) error {
	s.entries.Set(key, memEntry{data: data, expires: time.Now().Add(ttl), version: s.gen.Add(1)})
	return nil
}

// SetIfVersion implements [VersionedStore.SetIfVersion].
func (s *MemoryStore) SetIfVersion(_ context.Context, key string, data []byte, ttl time.Duration, version uint64) (bool, error) {
	stored := false
	s.entries.Compute(key, func(old memEntry, found bool) (memEntry, otter.ComputeOp) {
		cur := old.version
		if !found {
			cur = s.floor(key).Load()
		}
		if cur != version {
			return old, otter.CancelOp
		}
		stored = true
		return memEntry{data: data, expires: time.Now().Add(ttl), version: version}, otter.WriteOp
	})
	return stored, nil
}

// Delete implements [Store.Delete]: each key is replaced by a tombstone
// with a new version, kept for [DeleteGuard] (or until evicted).
func (s *MemoryStore) Delete(_ context.Context, keys ...string) error {
	exp := time.Now().Add(DeleteGuard)
	for _, k := range keys {
		s.entries.Set(k, memEntry{expires: exp, version: s.gen.Add(1)})
	}
	return nil
}

// AcquireLease implements [Leaser] (within one process).
func (s *MemoryStore) AcquireLease(_ context.Context, key string, ttl time.Duration) (func(), bool, error) {
	now := time.Now()
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if exp, ok := s.leases[key]; ok && now.Before(exp) {
		return nil, false, nil
	}
	n := 0
	for k, exp := range s.leases { // a few expired ones go with each lease
		if !now.Before(exp) {
			delete(s.leases, k)
		}
		if n++; n == 4 {
			break
		}
	}
	mine := now.Add(ttl)
	s.leases[key] = mine
	return func() {
		s.leaseMu.Lock()
		defer s.leaseMu.Unlock()
		if exp, ok := s.leases[key]; ok && exp.Equal(mine) {
			delete(s.leases, key)
		}
	}, true, nil
}

// BumpTags implements [Store.BumpTags]. Tags are hashed onto 16,384
// counters, so that memory does not grow with the number of tags: a tag
// that shares its counter with an invalidated one is invalidated too.
func (s *MemoryStore) BumpTags(_ context.Context, tags ...string) error {
	for _, t := range tags {
		s.tags[maphash.String(s.seed, t)%tagSlots].Add(1)
	}
	return nil
}
