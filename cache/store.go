package cache

import (
	"context"
	"encoding/json"
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
	// Delete removes keys. A [VersionedStore] also changes their
	// versions, and keeps that version for at least [DeleteGuard].
	Delete(ctx context.Context, keys ...string) error
	// BumpTags increments the version of each tag, atomically per tag:
	// every entry stored with an older version of a tag is stale from then
	// on, on every node.
	BumpTags(ctx context.Context, tags ...string) error
}

// VersionedStore is implemented by stores that keep a version per key, so
// that a load that read a key before a Delete or Set of it cannot store
// the older value it loaded over them: the cache stores a loaded value
// with SetIfVersion, which does nothing when the key's version changed
// since the load read it. Both of this package's stores implement it.
// With a store that does not, a Delete racing a load may be undone by it
// (the old value stays for its TTL).
type VersionedStore interface {
	Store
	// GetVersioned is Get that also returns the key's version: an
	// opaque number that Set and Delete change (Delete keeps the new one
	// for at least [DeleteGuard]); 0 for a key never written or long gone.
	GetVersioned(ctx context.Context, key string, tags []string) (entry []byte, version uint64, tagVersions []int64, err error)
	// SetIfVersion stores entry under key for ttl, keeping the key's
	// version, if that version is still version; it reports whether it
	// stored.
	SetIfVersion(ctx context.Context, key string, entry []byte, ttl time.Duration, version uint64) (bool, error)
}

// DeleteGuard is how long a [VersionedStore] remembers a Delete: a load
// of the key that started before the Delete and ends within DeleteGuard
// of it does not store its value (bound loads with
// [Options.LoadTimeout], 30 seconds by default, well within it).
const DeleteGuard = time.Hour

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
