package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/examples/game/snake"
)

// redisLobby is the lobby shared by every node over Redis:
//
//	<prefix>matches         set of open match IDs
//	<prefix>m:<match>       hash: slot → {"u":user,"n":name}
//	<prefix>u:<user>        "<match>|<slot>": the user's seat
//	<prefix>lease:<match>   the node that runs the match (expires)
//	<prefix>seq             the last match number
//
// Joining, leaving and closing are Lua scripts, so that two nodes never
// give one slot twice. The keys are not hash-tagged: the lobby wants a
// standalone Redis (or Sentinel), not a Cluster.
type redisLobby struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ lobby = (*redisLobby)(nil)

var joinScript = redis.NewScript(`
local p, user, name, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local seat = redis.call('GET', p..'u:'..user)
if seat then return seat end
local ids = redis.call('SMEMBERS', p..'matches')
table.sort(ids)
local best, most = nil, -1
for _, id in ipairs(ids) do
  local n = redis.call('HLEN', p..'m:'..id)
  if n < max and n > most then best, most = id, n end
end
if not best then
  best = 'm'..redis.call('INCR', p..'seq')
  redis.call('SADD', p..'matches', best)
end
for slot = 0, max - 1 do
  if redis.call('HSETNX', p..'m:'..best, slot, cjson.encode({u = user, n = name})) == 1 then
    seat = best..'|'..slot
    redis.call('SET', p..'u:'..user, seat)
    return seat
  end
end
return redis.error_reply('match full')
`)

var leaveScript = redis.NewScript(`
local p, match, user = ARGV[1], ARGV[2], ARGV[3]
local seat = redis.call('GET', p..'u:'..user)
if not seat or string.sub(seat, 1, #match + 1) ~= match..'|' then return 0 end
redis.call('DEL', p..'u:'..user)
redis.call('HDEL', p..'m:'..match, string.sub(seat, #match + 2))
return 1
`)

var closeScript = redis.NewScript(`
local p, match = ARGV[1], ARGV[2]
if redis.call('HLEN', p..'m:'..match) > 0 then return 0 end
redis.call('SREM', p..'matches', match)
return 1
`)

var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func parseSeat(s string) (seat, error) {
	m, slot, ok := strings.Cut(s, "|")
	n, err := strconv.Atoi(slot)
	if !ok || err != nil {
		return seat{}, fmt.Errorf("lobby: bad seat %q", s)
	}
	return seat{Match: m, Slot: n}, nil
}

func (l *redisLobby) Join(ctx context.Context, user, name string) (seat, error) {
	s, err := joinScript.Run(ctx, l.rdb, nil, l.prefix, user, name, snake.MaxPlayers).Text()
	if err != nil {
		return seat{}, fmt.Errorf("lobby: join: %w", err)
	}
	return parseSeat(s)
}

func (l *redisLobby) Seat(ctx context.Context, user string) (seat, bool, error) {
	s, err := l.rdb.Get(ctx, l.prefix+"u:"+user).Result()
	if errors.Is(err, redis.Nil) {
		return seat{}, false, nil
	}
	if err != nil {
		return seat{}, false, err
	}
	st, err := parseSeat(s)
	return st, err == nil, err
}

func (l *redisLobby) Players(ctx context.Context, match string) (map[int]player, error) {
	h, err := l.rdb.HGetAll(ctx, l.prefix+"m:"+match).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[int]player, len(h))
	for k, v := range h {
		slot, err := strconv.Atoi(k)
		var p player
		if err == nil && json.Unmarshal([]byte(v), &p) == nil {
			out[slot] = p
		}
	}
	return out, nil
}

func (l *redisLobby) Leave(ctx context.Context, match, user string) error {
	return leaveScript.Run(ctx, l.rdb, nil, l.prefix, match, user).Err()
}

func (l *redisLobby) Matches(ctx context.Context) (map[string]int, error) {
	ids, err := l.rdb.SMembers(ctx, l.prefix+"matches").Result()
	if err != nil {
		return nil, err
	}
	pipe := l.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		lens[i] = pipe.HLen(ctx, l.prefix+"m:"+id)
	}
	if _, err := pipe.Exec(ctx); err != nil && len(ids) > 0 {
		return nil, err
	}
	out := make(map[string]int, len(ids))
	for i, id := range ids {
		out[id] = int(lens[i].Val())
	}
	return out, nil
}

func (l *redisLobby) Close(ctx context.Context, match string) (bool, error) {
	n, err := closeScript.Run(ctx, l.rdb, nil, l.prefix, match).Int()
	return n == 1, err
}

func (l *redisLobby) Acquire(ctx context.Context, match, node string, ttl time.Duration) (bool, error) {
	n, err := acquireScript.Run(ctx, l.rdb, []string{l.prefix + "lease:" + match}, node, ttl.Milliseconds()).Int()
	return n == 1, err
}

func (l *redisLobby) Release(ctx context.Context, match, node string) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.prefix + "lease:" + match}, node).Err()
}
