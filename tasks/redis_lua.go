package tasks

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Redis store's scripts. KEYS[1] is the queue's key prefix,
// "<Prefix>{<queue>}:", so every key a script touches shares the queue's
// hash slot (Cluster). Keys under it:
//
//	pending                  list of due task IDs, in pickup order
//	scheduled, retry         zsets of waiting task IDs by due time (ms)
//	active                   zset of leased task IDs by lease deadline (ms)
//	succeeded, dead, cancelled  zsets of final task IDs by finish time (ms)
//	t:<id>                   hash: the task: "def" packs what never changes
//	                         (see packDef), beside state, attempt, token, times
//	                         and the latest error and progress
//	u:<key>                  string: the ID holding a unique key (PX ttl)
//	periodic                 hash: schedule name → last tick enqueued (ms)
//	wake                     pub/sub channel: due time of a new task, "0" for now
//
// Times come from the Redis server (TIME), so nodes with skewed clocks
// agree; clients send delays, not instants.
const luaPrelude = `
local base = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function tkey(id) return base .. 't:' .. id end
local woke = nil
local function wake(at)
  if woke == nil or at < woke then woke = at end
end
local function flushwake()
  if woke ~= nil then
    if woke <= now then woke = 0 end
    redis.call('PUBLISH', base .. 'wake', woke)
  end
end
-- release drops the task's unique key if the task still holds it; u is
-- the key when the caller read it already.
local function release(k, id, u)
  if u == nil then u = redis.call('HGET', k, 'ukey') end
  if u and u ~= '' then
    local uk = base .. 'u:' .. u
    if redis.call('GET', uk) == id then redis.call('DEL', uk) end
  end
end
-- finalize moves a task to a final state; flushfinals then indexes the
-- moved tasks with one ZADD per state, trims each state's set to keep,
-- and deletes the hashes of tasks not retained, with one DEL. Final
-- hashes carry no TTL: maintenance drops them past retention.
local finals, dels = {}, {}
local function finalize(k, id, st, ret, u)
  release(k, id, u)
  if ret <= 0 then
    dels[#dels + 1] = k
    return
  end
  redis.call('HSET', k, 'state', st, 'fin', now)
  local l = finals[st]
  if not l then l = {}; finals[st] = l end
  l[#l + 1] = now
  l[#l + 1] = id
end
local function flushfinals(keep)
  for st, l in pairs(finals) do
    local set = base .. st
    redis.call('ZADD', set, unpack(l))
    local n = redis.call('ZCARD', set) - keep
    if n > 0 then
      local old = redis.call('ZPOPMIN', set, n)
      for j = 1, #old, 2 do dels[#dels + 1] = tkey(old[j]) end
    end
  end
  if #dels > 0 then redis.call('DEL', unpack(dels)) end
  finals, dels = {}, {}
end
local function makepending(k, id, front)
  redis.call('HSET', k, 'state', 'pending', 'run_at', 0)
  if front then
    redis.call('LPUSH', base .. 'pending', id)
  else
    redis.call('RPUSH', base .. 'pending', id)
  end
  wake(0)
end
-- enqueue adds the task whose enqueueFields fields start at ARGV[i]: id,
-- packed definition, max attempts, delay ms, unique key, unique ttl ms.
-- A due task's ID is appended to pend (the caller pushes them at once).
-- It returns "" or the ID holding the unique key.
local function enqueue(i, pend)
  local id, ukey = ARGV[i], ARGV[i + 4]
  if ukey ~= '' then
    local uk = base .. 'u:' .. ukey
    if not redis.call('SET', uk, id, 'NX', 'PX', ARGV[i + 5]) then
      return redis.call('GET', uk) or '?'
    end
  end
  local k = tkey(id)
  local delay = tonumber(ARGV[i + 3])
  if delay > 0 then
    local at = now + delay
    redis.call('HSET', k, 'def', ARGV[i + 1], 'max', ARGV[i + 2], 'state', 'scheduled', 'enq', now, 'run_at', at)
    redis.call('ZADD', base .. 'scheduled', at, id)
    wake(at)
  else
    redis.call('HSET', k, 'def', ARGV[i + 1], 'max', ARGV[i + 2], 'state', 'pending', 'enq', now)
    pend[#pend + 1] = id
  end
  if ukey ~= '' then redis.call('HSET', k, 'ukey', ukey) end
  return ''
end
local function pushpending(pend)
  if #pend > 0 then
    redis.call('RPUSH', base .. 'pending', unpack(pend))
    wake(0)
  end
end
`

const enqueueFields = 6

// enqueueScript: ARGV = tasks of enqueueFields each. Returns one string
// per task: "" or the holder of its unique key.
var enqueueScript = redis.NewScript(luaPrelude + `
local res, pend = {}, {}
for i = 1, #ARGV, ` + strconv.Itoa(enqueueFields) + ` do res[#res + 1] = enqueue(i, pend) end
pushpending(pend)
flushwake()
return res
`)

// periodicScript: ARGV[1] = name, ARGV[2] = tick (ms), then one task.
// Returns 1 if it enqueued, 0 if the tick (or a later one) already was,
// or the holder of the task's unique key.
var periodicScript = redis.NewScript(luaPrelude + `
local last = redis.call('HGET', base .. 'periodic', ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
local pend = {}
local dup = enqueue(3, pend)
if dup ~= '' then return dup end
pushpending(pend)
redis.call('HSET', base .. 'periodic', ARGV[1], ARGV[2])
flushwake()
return 1
`)

// claimScript: ARGV = worker, max, lease ttl ms. Promotes due tasks, then
// leases up to max pending ones. Returns {now, next due or -1, then per
// task: definition, token, attempt, enqueue time}.
var claimScript = redis.NewScript(luaPrelude + `
local worker, max, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nd = -1
for _, z in ipairs({'scheduled', 'retry'}) do
  local due = redis.call('ZRANGEBYSCORE', base .. z, '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    local pend = {}
    for _, id in ipairs(due) do
      if redis.call('HSET', tkey(id), 'state', 'pending', 'run_at', 0) == 0 then
        pend[#pend + 1] = id
      else
        redis.call('DEL', tkey(id)) -- the hash was gone: HSET created it
      end
    end
    redis.call('ZREM', base .. z, unpack(due))
    if #pend > 0 then redis.call('RPUSH', base .. 'pending', unpack(pend)) end
  end
  local f = redis.call('ZRANGE', base .. z, 0, 0, 'WITHSCORES')
  if f[2] then
    local s = tonumber(f[2])
    if nd < 0 or s < nd then nd = s end
  end
end
local out = {now, nd}
local leased = {}
local n = 0
while n < max do
  local ids = redis.call('LPOP', base .. 'pending', max - n)
  if not ids then break end
  for _, id in ipairs(ids) do
    local k = tkey(id)
    local v = redis.call('HMGET', k, 'state', 'def', 'token', 'attempt', 'enq')
    if v[1] == 'pending' then
      local tok, att = tonumber(v[3] or 0) + 1, tonumber(v[4] or 0) + 1
      redis.call('HSET', k, 'state', 'active', 'worker', worker, 'start', now, 'token', tok, 'attempt', att)
      leased[#leased + 1] = now + ttl
      leased[#leased + 1] = id
      out[#out + 1] = v[2]
      out[#out + 1] = tok
      out[#out + 1] = att
      out[#out + 1] = v[5]
      n = n + 1
    end
  end
end
if #leased > 0 then redis.call('ZADD', base .. 'active', unpack(leased)) end
return out
`)

// renewScript: ARGV = ttl ms, then id, token pairs. Returns {lost IDs,
// IDs asked to cancel}.
var renewScript = redis.NewScript(luaPrelude + `
local ttl = tonumber(ARGV[1])
local lost, cancel, renewed = {}, {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local v = redis.call('HMGET', tkey(id), 'token', 'state', 'cancel')
  if v[1] ~= ARGV[i + 1] or v[2] ~= 'active' then
    lost[#lost + 1] = id
  else
    renewed[#renewed + 1] = now + ttl
    renewed[#renewed + 1] = id
    if v[3] == '1' then cancel[#cancel + 1] = id end
  end
end
if #renewed > 0 then redis.call('ZADD', base .. 'active', unpack(renewed)) end
return {lost, cancel}
`)

// finishScript: ARGV = retention ms, keep count, then per lease: id,
// token, state, retry delay ms, error. Returns 1 per lease finished, 0
// per lease lost.
var finishScript = redis.NewScript(luaPrelude + `
local ret, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local res, done = {}, {}
for i = 3, #ARGV, 5 do
  local id, st, err = ARGV[i], ARGV[i + 2], ARGV[i + 4]
  local k = tkey(id)
  local v = redis.call('HMGET', k, 'token', 'state', 'ukey', 'cancel')
  if v[1] ~= ARGV[i + 1] or v[2] ~= 'active' then
    res[#res + 1] = 0
  else
    res[#res + 1] = 1
    done[#done + 1] = id
    if err ~= '' then redis.call('HSET', k, 'err', err) end
    if v[4] == '1' then redis.call('HDEL', k, 'cancel') end
    if st == 'pending' then
      redis.call('HINCRBY', k, 'attempt', -1)
      makepending(k, id, true)
    elseif st == 'retry' then
      local at = now + math.max(tonumber(ARGV[i + 3]), 0)
      redis.call('HSET', k, 'state', 'retry', 'run_at', at)
      redis.call('ZADD', base .. 'retry', at, id)
      wake(at)
    else
      finalize(k, id, st, ret, v[3] or '')
    end
  end
end
if #done > 0 then redis.call('ZREM', base .. 'active', unpack(done)) end
flushfinals(keep)
flushwake()
return res
`)

// progressScript: ARGV = id, token, value. Returns 1, or 0 if the lease
// is lost.
var progressScript = redis.NewScript(luaPrelude + `
local k = tkey(ARGV[1])
local v = redis.call('HMGET', k, 'token', 'state')
if v[1] ~= ARGV[2] or v[2] ~= 'active' then return 0 end
redis.call('HSET', k, 'prog', ARGV[3])
return 1
`)

// maintainScript: ARGV = retention ms, keep count, error text. Hands back
// up to 100 tasks whose lease expired and drops final tasks past
// retention. Returns the hashes of the tasks handed back.
var maintainScript = redis.NewScript(luaPrelude + `
local ret, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local back = {}
local exp = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(exp) do
  local k = tkey(id)
  redis.call('ZREM', base .. 'active', id)
  local v = redis.call('HMGET', k, 'attempt', 'max', 'state')
  if v[3] == 'active' then
    redis.call('HSET', k, 'err', ARGV[3])
    redis.call('HDEL', k, 'cancel')
    if tonumber(v[1]) >= tonumber(v[2]) then
      local h = redis.call('HGETALL', k)
      finalize(k, id, 'dead', ret)
      h[#h + 1] = 'state'
      h[#h + 1] = 'dead'
      back[#back + 1] = h
    else
      makepending(k, id, true)
      back[#back + 1] = redis.call('HGETALL', k)
    end
  end
end
if ret > 0 then
  for _, st in ipairs({'succeeded', 'dead', 'cancelled'}) do
    local old = redis.call('ZRANGEBYSCORE', base .. st, '-inf', now - ret, 'LIMIT', 0, 500)
    for _, id in ipairs(old) do
      redis.call('ZREM', base .. st, id)
      redis.call('DEL', tkey(id))
    end
  end
end
flushfinals(keep)
flushwake()
return back
`)

// reconcileScript: ARGV = task IDs found by SCAN. Puts back into its
// state's structure every task a crash left out of it; drops hashes left
// without state. Returns how many it repaired.
var reconcileScript = redis.NewScript(luaPrelude + `
local fixed = 0
-- pending reports whether the pending list holds id, reading the list
-- once; a list too long to read is trusted.
local inpending, skip = nil, false
local function pending(id)
  if inpending == nil then
    inpending = {}
    if redis.call('LLEN', base .. 'pending') > 100000 then
      skip = true
    else
      for _, x in ipairs(redis.call('LRANGE', base .. 'pending', 0, -1)) do inpending[x] = true end
    end
  end
  return skip or inpending[id] or false
end
for _, id in ipairs(ARGV) do
  local k = tkey(id)
  local v = redis.call('HMGET', k, 'state', 'run_at', 'fin')
  local st = v[1]
  if st == 'pending' then
    if not pending(id) then
      redis.call('RPUSH', base .. 'pending', id)
      wake(0)
      fixed = fixed + 1
    end
  elseif st == 'scheduled' or st == 'retry' or st == 'active' then
    if not redis.call('ZSCORE', base .. st, id) then
      local at = tonumber(v[2]) or now
      if st == 'active' then at = now end
      redis.call('ZADD', base .. st, at, id)
      fixed = fixed + 1
    end
  elseif st == 'succeeded' or st == 'dead' or st == 'cancelled' then
    if not redis.call('ZSCORE', base .. st, id) then
      redis.call('ZADD', base .. st, tonumber(v[3]) or now, id)
      fixed = fixed + 1
    end
  elseif not st and redis.call('EXISTS', k) == 1 then
    redis.call('DEL', k)
    fixed = fixed + 1
  end
end
flushwake()
return fixed
`)

// changeScript: ARGV = op (retry, cancel, delete), id, retention ms,
// keep count. Returns the task's hash after the change, {} when deleted,
// or an error reply "NOTFOUND" or "BADSTATE <state>".
var changeScript = redis.NewScript(luaPrelude + `
local op, id, ret, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local k = tkey(id)
local st = redis.call('HGET', k, 'state')
if not st then return redis.error_reply('NOTFOUND') end
local function unlink()
  if st == 'pending' then
    redis.call('LREM', base .. 'pending', 1, id)
  else
    redis.call('ZREM', base .. st, id)
  end
end
if op == 'retry' then
  if st == 'dead' or st == 'cancelled' then
    unlink()
    redis.call('PERSIST', k)
    redis.call('HSET', k, 'attempt', 0, 'fin', 0)
  elseif st == 'scheduled' or st == 'retry' then
    unlink()
  else
    return redis.error_reply('BADSTATE ' .. st)
  end
  makepending(k, id, false)
elseif op == 'cancel' then
  if st == 'pending' or st == 'scheduled' or st == 'retry' then
    unlink()
    local h = redis.call('HGETALL', k)
    finalize(k, id, 'cancelled', ret)
    flushfinals(keep)
    if ret <= 0 then
      h[#h + 1] = 'state'
      h[#h + 1] = 'cancelled'
      return h
    end
  elseif st == 'active' then
    redis.call('HSET', k, 'cancel', '1')
  else
    return redis.error_reply('BADSTATE ' .. st)
  end
elseif op == 'delete' then
  if st == 'active' then return redis.error_reply('BADSTATE ' .. st) end
  unlink()
  release(k, id)
  redis.call('DEL', k)
  return {}
end
flushwake()
return redis.call('HGETALL', k)
`)
