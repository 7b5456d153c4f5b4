package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisPresenceOptions configure [NewRedisPresence].
type RedisPresenceOptions struct {
	// Client is the Redis connection (standalone, Sentinel or Cluster).
	// Required; not closed by the presence.
	Client redis.UniversalClient
	// Prefix starts every key. Default "rtkit:" (the backplane's default,
	// so one prefix covers an application).
	Prefix string
	// TTL is how long an entry lives without a refresh: the longest a
	// crashed node's members stay listed. The hub refreshes its entries
	// every 10 seconds, so TTL must be well above that. Default 30s.
	TTL time.Duration
}

// RedisPresence is a [Presence] shared by every hub on one Redis. Each
// room has a sorted set of connection IDs scored by expiry time and a hash
// of their members, under keys that share the room's hash slot. Entries
// expire unless the hub that owns them refreshes them, so the members of a
// crashed node disappear within TTL, and the next refresh of a surviving
// node in the room announces their departure.
//
// On a Cluster, a call that fails on a connection error asks the client
// to refresh its slot map (at most every 250ms): go-redis does so by
// itself only on MOVED or once a minute, so without it presence would fail
// for up to a minute after a primary fails over, instead of about
// cluster-node-timeout plus a second or two. Add, Remove and List are
// then tried once more, 100ms later.
type RedisPresence struct {
	client   redis.UniversalClient
	prefix   string
	ttl      time.Duration
	reloaded atomic.Int64 // unix ns of the last slot map refresh asked for
}

var (
	_ Presence        = (*RedisPresence)(nil)
	_ PresenceCounter = (*RedisPresence)(nil)
)

// NewRedisPresence returns a RedisPresence configured by opts.
func NewRedisPresence(opts RedisPresenceOptions) (*RedisPresence, error) {
	if opts.Client == nil {
		return nil, errors.New("realtime: RedisPresenceOptions.Client is nil")
	}
	p := &RedisPresence{client: opts.Client, prefix: opts.Prefix, ttl: opts.TTL}
	if p.prefix == "" {
		p.prefix = "rtkit:"
	}
	if p.ttl <= 0 {
		p.ttl = 30 * time.Second
	}
	return p, nil
}

func (p *RedisPresence) keys(room string) (expiry, members string) {
	base := p.prefix + "{" + room + "}:presence"
	return base, base + ":members"
}

// failed asks a Cluster client to refresh its slot map after a connection
// error, at most every 250ms. It reports whether err was such an error.
func (p *RedisPresence) failed(err error) bool {
	c, ok := p.client.(*redis.ClusterClient)
	var rerr redis.Error
	if !ok || err == nil || (errors.As(err, &rerr) && !redis.HasErrorPrefix(err, "CLUSTERDOWN")) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	now, last := time.Now().UnixNano(), p.reloaded.Load()
	if now-last >= int64(250*time.Millisecond) && p.reloaded.CompareAndSwap(last, now) {
		c.ReloadState(context.Background())
	}
	return true
}

// again runs f, and once more, after a slot map refresh, if it failed on a
// connection error to a Cluster node (every presence call is idempotent).
func (p *RedisPresence) again(ctx context.Context, f func() error) error {
	err := f()
	if !p.failed(err) {
		return err
	}
	tm := time.NewTimer(100 * time.Millisecond)
	defer tm.Stop()
	select {
	case <-tm.C:
		return f()
	case <-ctx.Done():
		return err
	}
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Add implements [Presence.Add].
func (p *RedisPresence) Add(ctx context.Context, room string, m Member) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	zk, hk := p.keys(room)
	now := time.Now()
	err = p.again(ctx, func() error {
		_, err := p.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.HSet(ctx, hk, m.Conn, raw)
			pipe.ZAdd(ctx, zk, redis.Z{Score: float64(now.Add(p.ttl).UnixMilli()), Member: m.Conn})
			pipe.PExpire(ctx, hk, 2*p.ttl)
			pipe.PExpire(ctx, zk, 2*p.ttl)
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("realtime: presence add: %w", err)
	}
	return nil
}

// Remove implements [Presence.Remove].
func (p *RedisPresence) Remove(ctx context.Context, room, conn string) error {
	zk, hk := p.keys(room)
	err := p.again(ctx, func() error {
		_, err := p.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.ZRem(ctx, zk, conn)
			pipe.HDel(ctx, hk, conn)
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("realtime: presence remove: %w", err)
	}
	return nil
}

// List implements [Presence.List]; expired entries are left out.
func (p *RedisPresence) List(ctx context.Context, room string) ([]Member, error) {
	zk, hk := p.keys(room)
	var conns []string
	err := p.again(ctx, func() (err error) {
		conns, err = p.client.ZRangeByScore(ctx, zk, &redis.ZRangeBy{Min: ms(time.Now()), Max: "+inf"}).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("realtime: presence list: %w", err)
	}
	out := make([]Member, 0, len(conns))
	for len(conns) > 0 {
		n := min(len(conns), 1000)
		vals, err := p.client.HMGet(ctx, hk, conns[:n]...).Result()
		if err != nil {
			p.failed(err)
			return nil, fmt.Errorf("realtime: presence list: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			var m Member
			if ok && json.Unmarshal([]byte(s), &m) == nil {
				out = append(out, m)
			}
		}
		conns = conns[n:]
	}
	sortMembers(out)
	return out, nil
}

// Count implements [PresenceCounter.Count]: one ZCOUNT of the entries
// not yet expired, O(log N) in the room's size, whatever the number of
// members.
func (p *RedisPresence) Count(ctx context.Context, room string) (int, error) {
	zk, _ := p.keys(room)
	var n int64
	err := p.again(ctx, func() (err error) {
		n, err = p.client.ZCount(ctx, zk, ms(time.Now()), "+inf").Result()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("realtime: presence count: %w", err)
	}
	return int(n), nil
}

// sweepScript removes a room's expired entries and returns their members.
var sweepScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
local out = {}
for _, id in ipairs(ids) do
  local m = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  if m then out[#out+1] = m end
end
return out
`)

// Refresh implements [Presence.Refresh]: it extends the local entries and
// removes the expired entries of the same rooms, in one pipeline.
func (p *RedisPresence) Refresh(ctx context.Context, local map[string][]string) (map[string][]Member, error) {
	if len(local) == 0 {
		return nil, nil
	}
	now := time.Now()
	score := float64(now.Add(p.ttl).UnixMilli())
	pipe := p.client.Pipeline()
	sweeps := make(map[string]*redis.Cmd, len(local))
	for room, conns := range local {
		zk, hk := p.keys(room)
		zs := make([]redis.Z, len(conns))
		for i, c := range conns {
			zs[i] = redis.Z{Score: score, Member: c}
		}
		pipe.ZAddXX(ctx, zk, zs...)
		pipe.PExpire(ctx, zk, 2*p.ttl)
		pipe.PExpire(ctx, hk, 2*p.ttl)
		sweeps[room] = sweepScript.Eval(ctx, pipe, []string{zk, hk}, ms(now))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		p.failed(err)
		return nil, fmt.Errorf("realtime: presence refresh: %w", err)
	}
	expired := make(map[string][]Member)
	for room, cmd := range sweeps {
		vals, err := cmd.StringSlice()
		if err != nil {
			continue
		}
		for _, v := range vals {
			var m Member
			if json.Unmarshal([]byte(v), &m) == nil {
				expired[room] = append(expired[room], m)
			}
		}
	}
	return expired, nil
}
