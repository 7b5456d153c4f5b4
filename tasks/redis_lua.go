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
//	active                   set of leased task IDs
//	leases                   zset of workers by lease deadline (ms)
//	succeeded, dead, cancelled  lists of final task IDs, oldest first
//	f:def                    hash: ID → enqueue time (ms), NUL, and what
//	                         never changes (see packDef)
//	f:st                     hash: ID → the task's state line (below)
//	f:runat                  hash: ID → due time while scheduled or retrying
//	f:ukey, f:err, f:prog    hashes: ID → unique key, latest error, progress
//	                         (only for tasks that have one)
//	cancel                   set: IDs of active tasks asked to cancel
//	seq                      counter: the fencing token of the latest claim
//	u:<key>                  string: the ID holding a unique key (PX ttl)
//	periodic                 hash: schedule name → last tick enqueued (ms)
//	n:<nonce>, c:<nonce>, o:<nonce>  strings (PX retryWindow): the marks
//	                         of script calls applied (enqueue, claim,
//	                         change), so that a client's retry of the same
//	                         call is recognised (see below)
//	wake                     pub/sub channel: due time of a new task, "0" for now
//	paused                   string: set while the queue is paused (Pauser)
//
// A state line is "state|attempt", then for a task that has run
// "|token|started|worker"; a final state puts its finish time after the
// state: "succeeded|fin|attempt|token|started|worker" (times in ms). An
// active task's line is its lease's fence: a Finish, Renew or Progress
// goes through only if it sends the line its claim wrote.
//
// The layout keeps each transition's Lua work per task small: a script
// reads and writes a whole batch with one variadic command per hash, and
// per task it only compares and joins strings it has. Inside a script
// each command, each number formatted and each string built costs more
// than the command's own work, so a claim writes one field per task and
// shares the rest: one fencing token per claim (from seq: tokens must
// differ between claims of a task, not between the tasks of a claim),
// and one lease per worker in leases rather than one per task. A live
// worker's renewal keeps all its tasks; maintenance hands back the
// active tasks of workers whose lease expired.
//
// Every script is idempotent under a client's retry: go-redis sends a
// script again after a read timeout (MaxRetries), and Redis may by then
// have run the first one, so applying a call twice must have the effect
// of applying it once. Enqueue, claim and change calls carry a nonce and
// mark it applied (n:, c:, o:); a repeat finds the mark and returns what
// the first application did (enqueue: its reply; claim: the tasks leased
// under its token; change: the task as it is now) without doing it
// again. Enqueue also never touches an ID that exists. Finish recognises
// its own earlier application from the state line (the same run, now in
// the outcome's state); renew, progress, maintain and reconcile converge
// on the same state whatever the number of applications.
//
// Times come from the Redis server (TIME), so nodes with skewed clocks
// agree; clients send delays, not instants. Needs Redis 6.2 or later
// (LPOP with a count, SMISMEMBER).
const luaPrelude = `
local base = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = tostring(now)
local fields = {'def', 'st', 'runat', 'ukey', 'err', 'prog'}
-- vcall runs a variadic command over list in chunks that unpack can take.
local function vcall(cmd, key, list)
  for i = 1, #list, 4000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 3999, #list)))
  end
end
-- hmget reads field f of every ID in ids.
local function hmget(f, ids)
  if #ids == 0 then return {} end
  if #ids <= 4000 then return redis.call('HMGET', base .. 'f:' .. f, unpack(ids)) end
  local out = {}
  for i = 1, #ids, 4000 do
    local r = redis.call('HMGET', base .. 'f:' .. f, unpack(ids, i, math.min(i + 3999, #ids)))
    for j = 1, #r do out[#out + 1] = r[j] end
  end
  return out
end
-- sets collects field writes: sets[f] is an ID, value list; flushsets
-- writes them with one HSET per field.
local sets = {}
local function set(f, id, v)
  local l = sets[f]
  if not l then l = {}; sets[f] = l end
  l[#l + 1] = id
  l[#l + 1] = v
end
local function flushsets()
  for f, l in pairs(sets) do vcall('HSET', base .. 'f:' .. f, l) end
  sets = {}
end
-- stateof returns the state in a state line.
local function stateof(line) return line and string.match(line, '^%l+') end
-- runof returns a state line's "|attempt..." part.
local function runof(line)
  local st = stateof(line)
  if st == 'succeeded' or st == 'dead' or st == 'cancelled' then
    return string.match(line, '^%l+|%d+(|.*)$')
  end
  return string.sub(line, #st + 1)
end
-- attemptof returns a state line's attempt count.
local function attemptof(line) return tonumber(string.match(runof(line), '^|(%d+)')) end
local woke = nil
local function wake(at)
  if woke == nil or at < woke then woke = at end
end
-- release drops the task's unique key if the task still holds it; u is
-- the key when the caller read it already.
local function release(id, u)
  if u == nil then u = redis.call('HGET', base .. 'f:ukey', id) end
  if u and u ~= '' then
    local uk = base .. 'u:' .. u
    if redis.call('GET', uk) == id then redis.call('DEL', uk) end
  end
end
local function hascancel() return redis.call('SCARD', base .. 'cancel') > 0 end
-- drop deletes every trace of the tasks but their index entries.
local function drop(ids)
  if #ids == 0 then return end
  for _, f in ipairs(fields) do
    if f == 'def' or f == 'st' or redis.call('EXISTS', base .. 'f:' .. f) == 1 then
      vcall('HDEL', base .. 'f:' .. f, ids)
    end
  end
  if hascancel() then vcall('SREM', base .. 'cancel', ids) end
end
-- finalize moves a task whose state line is line to a final state; flush
-- then appends the moved tasks to their state's list with one RPUSH per
-- state, trims each list to keep, and drops the tasks not retained.
local finals, drops, finlines = {}, {}, {}
local function finalize(id, line, st, ret, u)
  release(id, u)
  -- the tasks of a claim share their state line: build each final line once
  local c = finlines[st]
  if not c then c = {}; finlines[st] = c end
  local fl = c[line]
  if not fl then
    fl = st .. '|' .. nows .. runof(line)
    c[line] = fl
  end
  set('st', id, fl)
  if ret <= 0 then
    drops[#drops + 1] = id
    return
  end
  local l = finals[st]
  if not l then l = {}; finals[st] = l end
  l[#l + 1] = id
end
-- flush writes the collected fields, final indexes and drops, and
-- publishes the earliest wake-up.
local function flush(keep)
  flushsets()
  for st, l in pairs(finals) do
    local k = base .. st
    vcall('RPUSH', k, l)
    local n = redis.call('LLEN', k) - keep
    if n > 0 then
      for _, id in ipairs(redis.call('LPOP', k, n)) do drops[#drops + 1] = id end
    end
  end
  drop(drops)
  finals, drops = {}, {}
  if woke ~= nil then
    if woke <= now then woke = 0 end
    redis.call('PUBLISH', base .. 'wake', woke)
  end
  woke = nil
end
-- views returns, per ID in ids that names a task, the ID and its fields
-- in the order of fields (false as ""), then 1 if a cancel was asked,
-- else 0.
local function views(ids)
  if #ids == 0 then return {} end
  local cols = {}
  for i, f in ipairs(fields) do cols[i] = hmget(f, ids) end
  local c = {}
  if hascancel() then c = redis.call('SMISMEMBER', base .. 'cancel', unpack(ids)) end
  local out = {}
  for j, id in ipairs(ids) do
    if cols[2][j] then
      out[#out + 1] = id
      for i = 1, #fields do out[#out + 1] = cols[i][j] or '' end
      out[#out + 1] = c[j] or 0
    end
  end
  return out
end
-- maxof returns a task's max attempts, from its definition.
local function maxof(def)
  return tonumber(string.match(def or '', '^[^%z]*%z[^%z]*%z[^%z]*%z(%d+)')) or 1
end
-- handback makes the active tasks in ids (state lines lines) pending
-- again at the front of the queue; with uncount, their attempt does not
-- count.
local function handback(ids, lines, uncount)
  if #ids == 0 then return end
  for j, id in ipairs(ids) do
    local a, rest = string.match(lines[j], '^active|(%d+)(.*)$')
    a = tonumber(a)
    if uncount then a = math.max(a - 1, 0) end
    set('st', id, 'pending|' .. a .. rest)
  end
  vcall('LPUSH', base .. 'pending', ids)
  wake(0)
end
-- enqueue adds the task whose enqueueFields fields start at ARGV[i]: id,
-- packed definition, delay ms, unique key, unique ttl ms. flushenq then
-- writes every task added. enqueue returns "", the ID itself when a task
-- with that ID exists (it is left alone), or the ID holding the unique
-- key.
local pend, sched, seen = {}, {}, {}
local enqpre = nows .. '\0'
local function enqueue(i)
  local id, ukey = ARGV[i], ARGV[i + 3]
  if seen[id] or redis.call('HEXISTS', base .. 'f:st', id) == 1 then return id end
  if ukey ~= '' then
    local uk = base .. 'u:' .. ukey
    if not redis.call('SET', uk, id, 'NX', 'PX', ARGV[i + 4]) then
      return redis.call('GET', uk) or '?'
    end
    set('ukey', id, ukey)
  end
  seen[id] = true
  set('def', id, enqpre .. ARGV[i + 1])
  local delay = tonumber(ARGV[i + 2])
  if delay > 0 then
    local at = now + delay
    set('st', id, 'scheduled|0')
    set('runat', id, tostring(at))
    sched[#sched + 1] = at
    sched[#sched + 1] = id
    wake(at)
  else
    set('st', id, 'pending|0')
    pend[#pend + 1] = id
  end
  return ''
end
-- mark records that the call with nonce key k (n:, c: or o:) applied,
-- with value v; applied returns that value if it did, else false.
local function mark(k, v) redis.call('SET', base .. k, v, 'PX', ` + retryWindowMS + `) end
local function applied(k) return redis.call('GET', base .. k) end
local function flushenq()
  flushsets()
  if #pend > 0 then
    vcall('RPUSH', base .. 'pending', pend)
    wake(0)
  end
  if #sched > 0 then vcall('ZADD', base .. 'scheduled', sched) end
end
`

const enqueueFields = 5

// retryWindowMS is how long, in ms, a script call's applied mark lasts:
// a client's retry of the call within it is recognised (go-redis's
// retries of one call, 3 by default with a 3s read timeout, come well
// within it). 30s.
const retryWindowMS = "30000"

// enqueueScript: ARGV = nonce, the number n of plain tasks (due now, no
// unique key), their id, packed definition pairs, then other tasks of
// enqueueFields each. Returns {position, holder} pairs for the tasks not
// enqueued (positions from 1 in ARGV order; the holder is the task's own
// ID when that ID exists, else the ID holding its unique key); a retry
// of the call returns the first application's reply (positions as
// strings).
var enqueueScript = redis.NewScript(luaPrelude + `
local nk = 'n:' .. ARGV[1]
local prev = applied(nk)
if prev then
  local res = {}
  for x in string.gmatch(prev, '[^%z]+') do res[#res + 1] = x end
  return res
end
local n = tonumber(ARGV[2])
local ids = {}
for i = 3, 2 * n + 1, 2 do ids[#ids + 1] = ARGV[i] end
local ex = hmget('st', ids)
local res, defs, st = {}, {}, {}
for j, id in ipairs(ids) do
  if ex[j] or seen[id] then
    res[#res + 1] = j
    res[#res + 1] = id
  else
    seen[id] = true
    defs[#defs + 1] = id
    defs[#defs + 1] = enqpre .. ARGV[2 * j + 2]
    st[#st + 1] = id
    st[#st + 1] = 'pending|0'
    pend[#pend + 1] = id
  end
end
vcall('HSET', base .. 'f:def', defs)
vcall('HSET', base .. 'f:st', st)
local k = n
for i = 2 * n + 3, #ARGV, ` + strconv.Itoa(enqueueFields) + ` do
  k = k + 1
  local h = enqueue(i)
  if h ~= '' then
    res[#res + 1] = k
    res[#res + 1] = h
  end
end
flushenq()
flush(0)
mark(nk, table.concat(res, '\0'))
return res
`)

// periodicScript: ARGV[1] = name, ARGV[2] = tick (ms), then one task.
// Returns 1 if it enqueued (or, on a retry of the call, had enqueued), 0
// if the tick (or a later one) already was, or the holder of the task's
// unique key (the task's own ID if the ID exists).
var periodicScript = redis.NewScript(luaPrelude + `
local last = redis.call('HGET', base .. 'periodic', ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  -- the task of this very call exists: a retry of the call that did it
  if tonumber(last) == tonumber(ARGV[2]) and redis.call('HEXISTS', base .. 'f:st', ARGV[3]) == 1 then return 1 end
  return 0
end
local dup = enqueue(3)
if dup ~= '' then return dup end
flushenq()
redis.call('HSET', base .. 'periodic', ARGV[1], ARGV[2])
flush(0)
return 1
`)

// claimScript: ARGV = worker, max, lease ttl ms, nonce. Promotes due
// tasks, then leases up to max pending ones, and extends the worker's
// lease. Returns {now, next due or -1, token, then per task: stored
// definition, attempt}. A retry of a call that leased tasks returns the
// tasks still active under its token, with their start time as now.
var claimScript = redis.NewScript(luaPrelude + `
local worker, max, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ck = 'c:' .. ARGV[4]
local prev = applied(ck)
if prev then
  local act = redis.call('SMEMBERS', base .. 'active')
  local lines, got, atts, started = hmget('st', act), {}, {}, now
  for j, id in ipairs(act) do
    local a, tok, st, w = string.match(lines[j] or '', '^active|(%d+)|(%d+)|(%d+)|(.*)$')
    if tok == prev and w == worker then
      got[#got + 1] = id
      atts[#atts + 1] = a
      started = tonumber(st)
    end
  end
  local out = {started, -1, tonumber(prev)}
  local d = hmget('def', got)
  for j = 1, #got do
    out[#out + 1] = d[j] or ''
    out[#out + 1] = atts[j]
  end
  return out
end
if redis.call('EXISTS', base .. 'paused') == 1 then return {now, -1, 0} end
local nd = -1
for _, z in ipairs({'scheduled', 'retry'}) do
  local due = redis.call('ZRANGEBYSCORE', base .. z, '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    local lines, p = hmget('st', due), {}
    for j, id in ipairs(due) do
      if stateof(lines[j]) == z then
        set('st', id, 'pending' .. runof(lines[j]))
        p[#p + 1] = id
      end
    end
    vcall('ZREM', base .. z, due)
    flushsets()
    vcall('HDEL', base .. 'f:runat', p)
    vcall('RPUSH', base .. 'pending', p)
  end
  local f = redis.call('ZRANGE', base .. z, 0, 0, 'WITHSCORES')
  if f[2] then
    local s = tonumber(f[2])
    if nd < 0 or s < nd then nd = s end
  end
end
local got, atts = {}, {}
while #got < max do
  local ids = redis.call('LPOP', base .. 'pending', max - #got)
  if not ids then break end
  local lines = hmget('st', ids)
  for j, id in ipairs(ids) do
    local l = lines[j]
    -- a never-run task's line is the same string for all (interned:
    -- comparing is free); others are parsed
    local a = (l == 'pending|0' and '0') or (l and string.match(l, '^pending|(%d+)'))
    if a then
      got[#got + 1] = id
      atts[#atts + 1] = a
    end
  end
end
if #got == 0 then return {now, nd, 0} end
local tok = redis.call('INCR', base .. 'seq')
mark(ck, tok)
local suffix = '|' .. tok .. '|' .. nows .. '|' .. worker
redis.call('ZADD', base .. 'leases', now + ttl, worker)
local d = hmget('def', got)
local out, sl = {now, nd, tok}, {}
local first = 'active|1' .. suffix
for j, id in ipairs(got) do
  local a = atts[j]
  if a == '0' then
    a = '1'
    sl[#sl + 1] = id
    sl[#sl + 1] = first
  else
    a = tostring(tonumber(a) + 1)
    sl[#sl + 1] = id
    sl[#sl + 1] = 'active|' .. a .. suffix
  end
  out[#out + 1] = d[j] or ''
  out[#out + 1] = a
end
vcall('HSET', base .. 'f:st', sl)
vcall('SADD', base .. 'active', got)
return out
`)

// renewScript: ARGV = worker, ttl ms, then id, state line pairs. Extends
// the worker's lease. Returns {lost IDs, IDs asked to cancel}. An active
// task of the worker's that the call doesn't hold (its Finish gave up,
// or its Claim's reply was lost) and that was claimed more than ttl ago
// is moved to the worker's expired shadow lease "<worker> (lost)", for
// maintenance to hand back as if its lease had expired.
var renewScript = redis.NewScript(luaPrelude + `
local worker, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', base .. 'leases', now + ttl, worker)
local ids, pre = {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  pre[#pre + 1] = ARGV[i + 1]
end
local lines = hmget('st', ids)
local c = {}
if hascancel() then c = redis.call('SMISMEMBER', base .. 'cancel', unpack(ids)) end
local lost, cancel, held, nheld = {}, {}, {}, 0
for j, id in ipairs(ids) do
  if lines[j] ~= pre[j] then
    lost[#lost + 1] = id
  else
    held[id] = true
    nheld = nheld + 1
    if c[j] == 1 then cancel[#cancel + 1] = id end
  end
end
-- the audit reads every active task: only when some are not held
if redis.call('SCARD', base .. 'active') > nheld then
  local act = redis.call('SMEMBERS', base .. 'active')
  local al = hmget('st', act)
  local shadow, moved = worker .. ' (lost)', false
  for j, id in ipairs(act) do
    if not held[id] then
      local a, tok, st, w = string.match(al[j] or '', '^active|(%d+)|(%d+)|(%d+)|(.*)$')
      if w == worker and tonumber(st) <= now - ttl then
        set('st', id, 'active|' .. a .. '|' .. tok .. '|' .. st .. '|' .. shadow)
        moved = true
      end
    end
  end
  if moved then
    flushsets()
    redis.call('ZADD', base .. 'leases', 0, shadow)
  end
end
return {lost, cancel}
`)

// finishScript: ARGV = retention ms, keep count, then per lease: id,
// its state line, state, retry delay ms, error. Returns the positions
// (from 1) of the leases lost. A lease whose task already shows this
// outcome of this run (a retry of the call) is not lost and not changed.
var finishScript = redis.NewScript(luaPrelude + `
local ret, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, 5 do ids[#ids + 1] = ARGV[i] end
local lines = hmget('st', ids)
local uk = {}
if redis.call('EXISTS', base .. 'f:ukey') == 1 then uk = hmget('ukey', ids) end
-- did reports whether line is what applying outcome to to the lease
-- whose fence is fl made: then this call is a retry of one applied.
local function did(line, fl, to)
  if not line then return ret <= 0 and (to == 'succeeded' or to == 'dead' or to == 'cancelled') end
  if to == 'pending' then
    local a, rest = string.match(fl, '^active|(%d+)(.*)$')
    return a ~= nil and line == 'pending|' .. math.max(tonumber(a) - 1, 0) .. rest
  end
  return stateof(line) == to and runof(line) == runof(fl)
end
local res, done, back, backl, retry = {}, {}, {}, {}, {}
for j, id in ipairs(ids) do
  local i = 3 + (j - 1) * 5
  local line, to, err = lines[j], ARGV[i + 2], ARGV[i + 4]
  if line ~= ARGV[i + 1] then
    if not did(line, ARGV[i + 1], to) then res[#res + 1] = j end
  else
    done[#done + 1] = id
    if err ~= '' then set('err', id, err) end
    if to == 'pending' then
      back[#back + 1] = id
      backl[#backl + 1] = line
    elseif to == 'retry' then
      local at = now + math.max(tonumber(ARGV[i + 3]), 0)
      set('st', id, 'retry' .. string.sub(line, 7))
      set('runat', id, tostring(at))
      retry[#retry + 1] = at
      retry[#retry + 1] = id
      wake(at)
    else
      finalize(id, line, to, ret, uk[j] or '')
    end
  end
end
vcall('SREM', base .. 'active', done)
if hascancel() then vcall('SREM', base .. 'cancel', done) end
handback(back, backl, true)
vcall('ZADD', base .. 'retry', retry)
flush(keep)
return res
`)

// progressScript: ARGV = id, state line, value. Returns 1, or 0 if the
// lease is lost.
var progressScript = redis.NewScript(luaPrelude + `
if redis.call('HGET', base .. 'f:st', ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', base .. 'f:prog', ARGV[1], ARGV[3])
return 1
`)

// maintainScript: ARGV = retention ms, keep count, error text. Hands back
// the active tasks of up to 100 workers whose lease expired and drops
// final tasks past retention. Returns the views (see views) of the tasks
// handed back.
var maintainScript = redis.NewScript(luaPrelude + `
local ret, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local seen = {}
local exp = redis.call('ZRANGEBYSCORE', base .. 'leases', '-inf', now, 'LIMIT', 0, 100)
for _, w in ipairs(exp) do seen[w] = true end
local out = {}
if #exp > 0 then
  local act = redis.call('SMEMBERS', base .. 'active')
  local lines = hmget('st', act)
  local ids, ls, stale = {}, {}, {}
  for j, id in ipairs(act) do
    local w = lines[j] and string.match(lines[j], '^active|%d+|%d+|%d+|(.*)$')
    if not w then
      stale[#stale + 1] = id -- not active: an index entry a crash left
    elseif seen[w] then
      ids[#ids + 1] = id
      ls[#ls + 1] = lines[j]
    end
  end
  vcall('SREM', base .. 'active', stale)
  vcall('SREM', base .. 'active', ids)
  vcall('ZREM', base .. 'leases', exp)
  if hascancel() then vcall('SREM', base .. 'cancel', ids) end
  local d, uk = hmget('def', ids), hmget('ukey', ids)
  local back, backl = {}, {}
  for j, id in ipairs(ids) do
    set('err', id, ARGV[3])
    if attemptof(ls[j]) >= maxof(d[j]) then
      finalize(id, ls[j], 'dead', ret, uk[j] or '')
    else
      back[#back + 1] = id
      backl[#backl + 1] = ls[j]
    end
  end
  handback(back, backl, false)
  out = ids
end
if ret > 0 then
  -- a final list is in finish order: pop from its head while too old
  for _, st in ipairs({'succeeded', 'dead', 'cancelled'}) do
    local k = base .. st
    local head = redis.call('LRANGE', k, 0, 499)
    local lines, n = hmget('st', head), 0
    for j = 1, #head do
      local fin = lines[j] and tonumber(string.match(lines[j], '^%l+|(%d+)'))
      if fin and fin > now - ret then break end
      n = j
    end
    if n > 0 then
      redis.call('LTRIM', k, n, -1)
      for j = 1, n do drops[#drops + 1] = head[j] end
    end
  end
end
flushsets()
local v = views(out)
flush(keep)
return v
`)

// viewScript: ARGV = task IDs. Returns the views (see views) of those
// that exist.
var viewScript = redis.NewScript(luaPrelude + `
return views(ARGV)
`)

// reconcileScript: ARGV = task IDs found by HSCAN of f:st. Puts back into
// its state's index every task a crash left out of it (an active task
// whose worker holds no lease gets an expired one, for maintenance to
// hand back), and drops tasks whose state is unknown or whose definition
// is gone. Returns how many it repaired.
var reconcileScript = redis.NewScript(luaPrelude + `
local fixed = 0
-- inlist reports whether the list of state st holds id, reading each
-- list once; a list too long to read is trusted.
local lists = {}
local function inlist(st, id)
  local m = lists[st]
  if m == nil then
    m = {}
    if redis.call('LLEN', base .. st) > 100000 then
      m = true
    else
      for _, x in ipairs(redis.call('LRANGE', base .. st, 0, -1)) do m[x] = true end
    end
    lists[st] = m
  end
  return m == true or m[id] or false
end
local known = {pending = true, scheduled = true, retry = true, active = true, succeeded = true, dead = true, cancelled = true}
local lines, d, ra = hmget('st', ARGV), hmget('def', ARGV), hmget('runat', ARGV)
for j, id in ipairs(ARGV) do
  local s = stateof(lines[j])
  if not s or not known[s] or not d[j] then
    if lines[j] or d[j] then
      drops[#drops + 1] = id
      fixed = fixed + 1
    end
  elseif s == 'pending' or s == 'succeeded' or s == 'dead' or s == 'cancelled' then
    if not inlist(s, id) then
      redis.call('RPUSH', base .. s, id)
      if s == 'pending' then wake(0) end
      fixed = fixed + 1
    end
  elseif s == 'active' then
    local w = string.match(lines[j], '^active|%d+|%d+|%d+|(.*)$')
    local f = 0
    if redis.call('SADD', base .. 'active', id) == 1 then f = 1 end
    if w and not redis.call('ZSCORE', base .. 'leases', w) then
      redis.call('ZADD', base .. 'leases', now, w)
      f = 1
    end
    fixed = fixed + f
  elseif not redis.call('ZSCORE', base .. s, id) then
    redis.call('ZADD', base .. s, tonumber(ra[j]) or now, id)
    fixed = fixed + 1
  end
end
flush(0)
return fixed
`)

// changeScript: ARGV = op (retry, cancel, delete), id, retention ms,
// keep count, nonce. Returns the task's view (see views) after the
// change, {} when deleted, or an error reply "NOTFOUND" or "BADSTATE
// <state>". A retry of a call that applied returns the task as it is.
var changeScript = redis.NewScript(luaPrelude + `
local op, id, ret, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ok = 'o:' .. ARGV[5]
if applied(ok) then
  if op == 'delete' then return {} end
  return views({id})
end
local line = redis.call('HGET', base .. 'f:st', id)
local st = stateof(line)
if not st then return redis.error_reply('NOTFOUND') end
local function unlink()
  if st == 'scheduled' or st == 'retry' then
    redis.call('ZREM', base .. st, id)
  else
    redis.call('LREM', base .. st, 1, id)
  end
end
if op == 'retry' then
  if st == 'dead' or st == 'cancelled' then
    unlink()
    set('st', id, 'pending|0')
  elseif st == 'scheduled' or st == 'retry' then
    unlink()
    redis.call('HDEL', base .. 'f:runat', id)
    set('st', id, 'pending' .. runof(line))
  else
    return redis.error_reply('BADSTATE ' .. st)
  end
  redis.call('RPUSH', base .. 'pending', id)
  wake(0)
elseif op == 'cancel' then
  if st == 'pending' or st == 'scheduled' or st == 'retry' then
    unlink()
    redis.call('HDEL', base .. 'f:runat', id)
    finalize(id, line, 'cancelled', ret)
    flushsets()
    local v = views({id})
    flush(keep)
    mark(ok, 1)
    return v
  elseif st == 'active' then
    redis.call('SADD', base .. 'cancel', id)
  else
    return redis.error_reply('BADSTATE ' .. st)
  end
elseif op == 'delete' then
  if st == 'active' then return redis.error_reply('BADSTATE ' .. st) end
  unlink()
  release(id)
  drop({id})
  mark(ok, 1)
  return {}
end
flush(keep)
mark(ok, 1)
return views({id})
`)
