package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is a [Store] on Redis (standalone, Sentinel or Cluster).
// An entry is a string under "<prefix><key>"; a tag's version is a
// counter under "<prefix>tag:{<tag>}", so that each lives in one Cluster
// slot and an invalidation is one INCR per tag. A read fetches the entry
// and its tags' versions in one pipelined round trip.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore whose keys start with prefix
// (default "rtkit:cache:"). It does not close client.
func NewRedisStore(client redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = "rtkit:cache:"
	}
	return &RedisStore{client: client, prefix: prefix}
}

func (s *RedisStore) tagKey(tag string) string { return s.prefix + "tag:{" + tag + "}" }

// Get implements [Store.Get].
func (s *RedisStore) Get(ctx context.Context, key string, tags []string) ([]byte, []int64, error) {
	if len(tags) == 0 {
		// One command: no pipeline to set up.
		b, err := s.client.Get(ctx, s.prefix+key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, nil, nil
		case err != nil:
			return nil, nil, fmt.Errorf("cache: redis get %q: %w", key, err)
		}
		return b, nil, nil
	}
	var (
		entry *redis.StringCmd
		vers  = make([]*redis.StringCmd, len(tags))
	)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		entry = p.Get(ctx, s.prefix+key)
		for i, t := range tags {
			vers[i] = p.Get(ctx, s.tagKey(t))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("cache: redis get %q: %w", key, err)
	}
	var out []int64
	if len(tags) > 0 {
		out = make([]int64, len(tags))
		for i, c := range vers {
			if v, err := c.Int64(); err == nil {
				out[i] = v
			}
		}
	}
	b, err := entry.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, out, nil
	}
	return b, out, err
}

// Set implements [Store.Set].
func (s *RedisStore) Set(ctx context.Context, key string, entry []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.prefix+key, entry, max(ttl, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("cache: redis set %q: %w", key, err)
	}
	return nil
}

// Delete implements [Store.Delete].
func (s *RedisStore) Delete(ctx context.Context, keys ...string) error {
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, s.prefix+k)
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
	lk := s.prefix + "lease:" + key
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
