package cache

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"sync"
	"time"
)

// Store keeps encoded entries and tag versions. Implementations: the
// in-process [MemoryStore] (default) and [RedisStore]. All methods are
// safe for concurrent use.
type Store interface {
	// Get returns the entry stored under key (nil if none) and the
	// current version of each tag (0 for a tag never invalidated), in one
	// round trip where the store has round trips.
	Get(ctx context.Context, key string, tags []string) (entry []byte, tagVersions []int64, err error)
	// Set stores entry under key for ttl.
	Set(ctx context.Context, key string, entry []byte, ttl time.Duration) error
	// Delete removes keys.
	Delete(ctx context.Context, keys ...string) error
	// BumpTags increments the version of each tag, atomically per tag:
	// every entry stored with an older version of a tag is stale from then
	// on, on every node.
	BumpTags(ctx context.Context, tags ...string) error
}

// Leaser is implemented by stores that can grant a short exclusive lease
// on a key, so that across nodes only one loads it ([Options.Lease]).
type Leaser interface {
	// AcquireLease takes the lease on key for ttl if nobody holds it. The
	// release function gives it up early (it is safe to call once the
	// lease has expired).
	AcquireLease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
}

// Codec turns values into bytes and back. ID identifies the codec in
// stored entries, so that an entry written with another codec is reloaded
// instead of misread; IDs 0–15 are reserved for rtkit.
type Codec interface {
	ID() byte
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec, encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) ID() byte                           { return 1 }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// MemoryStore is the in-process [Store]: a sharded map of entries with
// their expiry. Expired entries are removed when read and, a few at a
// time, as others are written. It starts no goroutine.
type MemoryStore struct {
	seed   maphash.Seed
	shards [32]memStoreShard
	tagsMu sync.Mutex
	tags   map[string]int64
}

type memStoreShard struct {
	mu      sync.Mutex
	entries map[string]memEntry
	writes  int
}

type memEntry struct {
	data    []byte
	expires time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), tags: make(map[string]int64)}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]memEntry)
	}
	return s
}

func (s *MemoryStore) shard(key string) *memStoreShard {
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

// Get implements [Store.Get].
func (s *MemoryStore) Get(_ context.Context, key string, tags []string) ([]byte, []int64, error) {
	sh := s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	e, ok := sh.entries[key]
	if ok && !now.Before(e.expires) {
		delete(sh.entries, key)
		ok = false
	}
	sh.mu.Unlock()
	var vers []int64
	if len(tags) > 0 {
		vers = make([]int64, len(tags))
		s.tagsMu.Lock()
		for i, t := range tags {
			vers[i] = s.tags[t]
		}
		s.tagsMu.Unlock()
	}
	if !ok {
		return nil, vers, nil
	}
	return e.data, vers, nil
}

// Set implements [Store.Set].
func (s *MemoryStore) Set(_ context.Context, key string, data []byte, ttl time.Duration) error {
	sh := s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.entries[key] = memEntry{data: data, expires: now.Add(ttl)}
	if sh.writes++; sh.writes%64 == 0 {
		// Sweep a few entries (map iteration order is random).
		n := 0
		for k, e := range sh.entries {
			if !now.Before(e.expires) {
				delete(sh.entries, k)
			}
			if n++; n == 16 {
				break
			}
		}
	}
	return nil
}

// Delete implements [Store.Delete].
func (s *MemoryStore) Delete(_ context.Context, keys ...string) error {
	for _, k := range keys {
		sh := s.shard(k)
		sh.mu.Lock()
		delete(sh.entries, k)
		sh.mu.Unlock()
	}
	return nil
}

// AcquireLease implements [Leaser] (within one process).
func (s *MemoryStore) AcquireLease(_ context.Context, key string, ttl time.Duration) (func(), bool, error) {
	lk := "\x00lease:" + key
	sh := s.shard(lk)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[lk]; ok && now.Before(e.expires) {
		return nil, false, nil
	}
	token := &memEntry{expires: now.Add(ttl)}
	sh.entries[lk] = *token
	return func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if e, ok := sh.entries[lk]; ok && e.expires.Equal(token.expires) {
			delete(sh.entries, lk)
		}
	}, true, nil
}

// BumpTags implements [Store.BumpTags].
func (s *MemoryStore) BumpTags(_ context.Context, tags ...string) error {
	s.tagsMu.Lock()
	defer s.tagsMu.Unlock()
	for _, t := range tags {
		s.tags[t]++
	}
	return nil
}
