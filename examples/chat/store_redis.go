package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps the records in Redis, under the app's prefix:
//
//	users              hash handle -> user JSON; usercount counts creations
//	rooms              hash name -> room JSON
//	members:<room>     set of handles; myrooms:<handle> the other way round
//	read:<handle>      hash topic -> last message ID seen
//	dms:<handle>       sorted set of partners, scored by the last message (ms)
//	pending:<handle>   list of pending notifications (JSON), oldest first
type redisStore struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ store = (*redisStore)(nil)

func (s *redisStore) k(parts ...string) string {
	k := s.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func (s *redisStore) CreateUser(ctx context.Context, u user) (bool, error) {
	data, err := json.Marshal(u)
	if err != nil {
		return false, err
	}
	ok, err := s.rdb.HSetNX(ctx, s.k("users"), u.Handle, data).Result()
	if err != nil {
		return false, err
	}
	if !ok {
		return false, errTaken
	}
	n, err := s.rdb.Incr(ctx, s.k("usercount")).Result()
	return n == 1, err
}

func getJSON[T any](ctx context.Context, rdb redis.UniversalClient, key, field string) (T, error) {
	var v T
	data, err := rdb.HGet(ctx, key, field).Bytes()
	if errors.Is(err, redis.Nil) {
		return v, errNotFound
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%s %s: %w", key, field, err)
	}
	return v, nil
}

func allJSON[T any](ctx context.Context, rdb redis.UniversalClient, key string) ([]T, error) {
	m, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]T, 0, len(m))
	for _, k := range keys {
		var v T
		if err := json.Unmarshal([]byte(m[k]), &v); err != nil {
			return nil, fmt.Errorf("%s %s: %w", key, k, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *redisStore) put(ctx context.Context, key, field string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, key, field, data).Err()
}

func (s *redisStore) User(ctx context.Context, handle string) (user, error) {
	return getJSON[user](ctx, s.rdb, s.k("users"), handle)
}

func (s *redisStore) PutUser(ctx context.Context, u user) error {
	return s.put(ctx, s.k("users"), u.Handle, u)
}

func (s *redisStore) Users(ctx context.Context) ([]user, error) {
	return allJSON[user](ctx, s.rdb, s.k("users"))
}

func (s *redisStore) CreateRoom(ctx context.Context, r room) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ok, err := s.rdb.HSetNX(ctx, s.k("rooms"), r.Name, data).Result()
	if err == nil && !ok {
		err = errTaken
	}
	return err
}

func (s *redisStore) Room(ctx context.Context, name string) (room, error) {
	return getJSON[room](ctx, s.rdb, s.k("rooms"), name)
}

func (s *redisStore) PutRoom(ctx context.Context, r room) error {
	return s.put(ctx, s.k("rooms"), r.Name, r)
}

func (s *redisStore) Rooms(ctx context.Context) ([]room, error) {
	return allJSON[room](ctx, s.rdb, s.k("rooms"))
}

func (s *redisStore) AddMember(ctx context.Context, room, handle string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, s.k("members", room), handle)
		p.SAdd(ctx, s.k("myrooms", handle), room)
		return nil
	})
	return err
}

func (s *redisStore) RemoveMember(ctx context.Context, room, handle string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, s.k("members", room), handle)
		p.SRem(ctx, s.k("myrooms", handle), room)
		return nil
	})
	return err
}

func (s *redisStore) IsMember(ctx context.Context, room, handle string) (bool, error) {
	return s.rdb.SIsMember(ctx, s.k("members", room), handle).Result()
}

func (s *redisStore) sorted(ctx context.Context, key string) ([]string, error) {
	out, err := s.rdb.SMembers(ctx, key).Result()
	slices.Sort(out)
	return out, err
}

func (s *redisStore) Members(ctx context.Context, room string) ([]string, error) {
	return s.sorted(ctx, s.k("members", room))
}

func (s *redisStore) UserRooms(ctx context.Context, handle string) ([]string, error) {
	return s.sorted(ctx, s.k("myrooms", handle))
}

func (s *redisStore) MarkRead(ctx context.Context, handle, topic, id string) error {
	return s.rdb.HSet(ctx, s.k("read", handle), topic, id).Err()
}

func (s *redisStore) ReadMarkers(ctx context.Context, handle string) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, s.k("read", handle)).Result()
}

func (s *redisStore) TouchDM(ctx context.Context, a, b string, t time.Time) error {
	ms := float64(t.UnixMilli())
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, s.k("dms", a), redis.Z{Score: ms, Member: b})
		p.ZAdd(ctx, s.k("dms", b), redis.Z{Score: ms, Member: a})
		return nil
	})
	return err
}

func (s *redisStore) DMs(ctx context.Context, handle string) ([]dmEntry, error) {
	zs, err := s.rdb.ZRevRangeWithScores(ctx, s.k("dms", handle), 0, 199).Result()
	if err != nil {
		return nil, err
	}
	out := make([]dmEntry, 0, len(zs))
	for _, z := range zs {
		out = append(out, dmEntry{With: fmt.Sprint(z.Member), Last: time.UnixMilli(int64(z.Score))})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.After(out[j].Last) })
	return out, nil
}

func (s *redisStore) PushPending(ctx context.Context, handle string, p pending) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.rdb.RPush(ctx, s.k("pending", handle), data).Err()
}

func (s *redisStore) Pending(ctx context.Context, handle string) ([]pending, error) {
	items, err := s.rdb.LRange(ctx, s.k("pending", handle), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]pending, 0, len(items))
	for _, it := range items {
		var p pending
		if json.Unmarshal([]byte(it), &p) == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *redisStore) DropPending(ctx context.Context, handle string, n int) error {
	return s.rdb.LTrim(ctx, s.k("pending", handle), int64(n), -1).Err()
}
