package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtkit/rtkit/internal/redisslots"
)

// RedisStore is a [Store] on Redis (standalone, Sentinel or Cluster).
// Its keys live in three namespaces under the prefix, so that no cache
// key can collide with a tag counter or a lease:
//
//   - "<prefix>k:<key>": an entry, a string: its 8-byte version, a byte
//     (0: an entry, 1: a tombstone left by Delete, kept for
//     [DeleteGuard]), then the encoded entry;
//   - "<prefix>t:{<tag>}": a tag's version counter (in the tag's own
//     Cluster slot, so that an invalidation is one INCR per tag);
//   - "<prefix>l:<key>": a lease ([Options.Lease]).
//
// A read fetches the entry and its tags' versions in one round trip; a
// load's value is stored by a script that checks the version first
// ([VersionedStore]).
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

var (
	_ VersionedStore = (*RedisStore)(nil)
	_ Leaser         = (*RedisStore)(nil)
)

// NewRedisStore returns a RedisStore whose keys start with prefix
// (default "rtkit:cache:"). It does not close client.
//
// Given a *redis.ClusterClient, it adds a hook to it that refreshes the
// client's slot map after a command fails on a connection error or
// CLUSTERDOWN (at most four times a second): go-redis alone refreshes it
// only on MOVED or once a minute, so after a primary fails over the store
// would fail for up to a minute instead of about the cluster's node
// timeout.
func NewRedisStore(client redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = "rtkit:cache:"
	}
	redisslots.Follow(client)
	return &RedisStore{client: client, prefix: prefix}
}

func (s *RedisStore) entryKey(key string) string { return s.prefix + "k:" + key }
func (s *RedisStore) tagKey(tag string) string   { return s.prefix + "t:{" + tag + "}" }

// headLen is the length of the version and kind in front of a stored
// entry.
const headLen = 9

// splitVersion splits a stored value into its version and entry (nil for
// a tombstone; bytes too short to have a head are returned whole, to be
// found corrupt).
func splitVersion(b []byte) (uint64, []byte) {
	if len(b) < headLen {
		return 0, b
	}
	v := binary.BigEndian.Uint64(b)
	if b[8] == 1 {
		return v, nil
	}
	return v, b[headLen:]
}

// newVersion is a random non-zero version (0 is the version of an absent
// key).
func newVersion() uint64 { return rand.Uint64() | 1 }

// Get implements [Store.Get].
func (s *RedisStore) Get(ctx context.Context, key string, tags []string) ([]byte, []int64, error) {
	b, _, vers, err := s.GetVersioned(ctx, key, tags)
	return b, vers, err
}

// GetVersioned implements [VersionedStore.GetVersioned].
func (s *RedisStore) GetVersioned(ctx context.Context, key string, tags []string) ([]byte, uint64, []int64, error) {
	if len(tags) == 0 {
		// One command: no pipeline to set up.
		b, err := s.client.Get(ctx, s.entryKey(key)).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, 0, nil, nil
		case err != nil:
			return nil, 0, nil, fmt.Errorf("cache: redis get %q: %w", key, err)
		}
		v, e := splitVersion(b)
		return e, v, nil, nil
	}
	var (
		entry *redis.StringCmd
		vers  = make([]*redis.StringCmd, len(tags))
	)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		entry = p.Get(ctx, s.entryKey(key))
		for i, t := range tags {
			vers[i] = p.Get(ctx, s.tagKey(t))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, nil, fmt.Errorf("cache: redis get %q: %w", key, err)
	}
	out := make([]int64, len(tags))
	for i, c := range vers {
		if v, err := c.Int64(); err == nil {
			out[i] = v
		}
	}
	b, err := entry.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, 0, out, nil
	}
	v, e := splitVersion(b)
	return e, v, out, err
}

// withVersion is the stored form of an entry (nil: a tombstone).
func withVersion(v uint64, entry []byte) []byte {
	b := make([]byte, headLen, headLen+len(entry))
	binary.BigEndian.PutUint64(b, v)
	if entry == nil {
		b[8] = 1
	}
	return append(b, entry...)
}

// Set implements [Store.Set]: the key gets a new version.
func (s *RedisStore) Set(ctx context.Context, key string, entry []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.entryKey(key), withVersion(newVersion(), entry), max(ttl, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("cache: redis set %q: %w", key, err)
	}
	return nil
}

// setIfVersionScript stores ARGV[1] (version, then entry) for ARGV[2] ms
// if the key's version (8 zero bytes when absent) is ARGV[1]'s.
var setIfVersionScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local v = string.rep('\0', 8)
if cur then v = string.sub(cur, 1, 8) end
if v ~= string.sub(ARGV[1], 1, 8) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// SetIfVersion implements [VersionedStore.SetIfVersion].
func (s *RedisStore) SetIfVersion(ctx context.Context, key string, entry []byte, ttl time.Duration, version uint64) (bool, error) {
	n, err := setIfVersionScript.Run(ctx, s.client, []string{s.entryKey(key)},
		withVersion(version, entry), max(ttl, time.Millisecond).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("cache: redis set %q: %w", key, err)
	}
	return n == 1, nil
}

// Delete implements [Store.Delete]: each key is replaced by a tombstone
// with a new version, kept for [DeleteGuard].
func (s *RedisStore) Delete(ctx context.Context, keys ...string) error {
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Set(ctx, s.entryKey(k), withVersion(newVersion(), nil), DeleteGuard)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: redis delete: %w", err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// AcquireLease implements [Leaser]: SET NX PX with a random token, released
// only by its holder.
func (s *RedisStore) AcquireLease(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	lk := s.prefix + "l:" + key
	token := strconv.FormatUint(rand.Uint64(), 36)
	ok, err := s.client.SetNX(ctx, lk, token, max(ttl, time.Millisecond)).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = releaseScript.Run(rctx, s.client, []string{lk}, token).Err()
	}, true, nil
}

// BumpTags implements [Store.BumpTags].
func (s *RedisStore) BumpTags(ctx context.Context, tags ...string) error {
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range tags {
			p.Incr(ctx, s.tagKey(t))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: redis invalidate tags: %w", err)
	}
	return nil
}
