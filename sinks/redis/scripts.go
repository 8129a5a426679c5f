package redis

import "github.com/redis/go-redis/v9"

// The Lua scripts the sink runs. Redis runs a script as one atomic unit: no
// other client's command runs in between. A script that fails part way
// keeps what it already wrote (Redis has no rollback), so batchScript does
// everything that can fail (the position check, the type and content
// checks) before its first write; after that, its commands are well-formed
// writes to keys of the right type, which do not fail. (An out-of-memory
// server refuses a script's first write, never a later one.)
//
// The scripts reach keys they are not given in KEYS, which standalone Redis
// allows; Redis Cluster does not, and the sink does not support it.
//
// A table's key list (see README) is a set, or a sorted set scored by each
// key's expiry when the view has a TTL. The scripts take a list as they
// find it: a list made before (by another version, or with another ttl)
// keeps its type. listLib holds what they share.
const listLib = `
-- Replicate the effects, not the script (the default since Redis 5; SSCAN
-- is not deterministic).
if redis.replicate_commands then redis.replicate_commands() end

local function keyType(z)
  return redis.call('TYPE', z).ok
end

-- eachKeys calls f(keys, scores) for the keys of list z (of type t) in
-- runs of about 1000, scores nil for a set. A zset is emptied as it goes
-- (ZPOPMIN); a set is scanned, then deleted (SPOP is slower: it samples a
-- hash table that empties as it goes).
local function eachKeys(z, t, f)
  if t == 'zset' then
    while true do
      local r = redis.call('ZPOPMIN', z, 1000)
      if #r == 0 then return end
      local ks, sc = {}, {}
      for j = 1, #r, 2 do ks[#ks + 1] = r[j]; sc[#sc + 1] = r[j + 1] end
      f(ks, sc)
    end
  elseif t == 'set' then
    local cursor = '0'
    repeat
      local r = redis.call('SSCAN', z, cursor, 'COUNT', 1000)
      cursor = r[1]
      if #r[2] > 0 then f(r[2], nil) end
    until cursor == '0'
    redis.call('UNLINK', z) -- a big set is freed off the main thread
  end
end

-- drain deletes every key list z holds, and z.
local function drain(z)
  eachKeys(z, keyType(z), function(ks)
    for a = 1, #ks, 1000 do redis.call('DEL', unpack(ks, a, math.min(a + 999, #ks))) end
  end)
end
`

// batchScript applies one batch and stores its position.
//
//	KEYS[1]  the position key  KEYS[2]  the origins hash  KEYS[3]  the set of key lists
//	ARGV[1]  the batch's Last position, to store
//	ARGV[2]  1 and ARGV[3] the position the sink expects to be stored, or
//	         0 and ARGV[3] empty when it expects none
//	ARGV[4]  the type of a key list made now: set, or zset with a TTL
//	ARGV[5]  the score of a row key in a zset key list (its expiry, or 0)
//	ARGV[6]  the TTL in ms for SET PX and PEXPIRE, or empty for none
//	ARGV[7]  entries of a zset key list scored at or below this are dropped
//	         when the list is registered (expired keys), or empty
//	ARGV[8]  2n, then n origin (key, position) pairs for KEYS[2]
//	then     the number of arguments of the writes, then the writes, each
//	         either a row group or a command:
//	  R fmt count nl list1..listnl m, then count rows: [li] key [m] v1..vm
//	         whole-row writes of distinct keys: every key is deleted (fmt
//	         H; fmt J deletes only the rows with m = 0), then each row with
//	         m > 0 written (H: HSET key v1..vm, J: SET key v1), with the
//	         TTL; then the keys written are added to their key list and the
//	         deleted ones removed from it. A row gives its list's index li
//	         only when nl > 1, and its m only when the header's m is -1.
//	  n cmd args  a command and its n-1 arguments: any Redis command, or
//	    TRUNCATE list        delete every key in list, the list, and its
//	                         entry in KEYS[3]
//	    REGISTER list        add list to KEYS[3]; drop its expired entries
//	    TRACK list score key add key to list
//	    SREMX set member list  SREM, and remove set from list when it is
//	                         left empty
//	then     the number of checks, then the checks, all run before the
//	         first write:
//	           T key type event         key must be of that type or missing
//	                                    (type "keys": a set or a zset)
//	           G key 0|1 value event    GET key must be value (1) or missing (0)
//	           H key n f1 v1 .. event   the hash must hold exactly those n
//	                                    fields (n = -1: must not exist)
//
// It returns {"moved", stored} (or {"moved"} when none is stored) when the
// stored position is not the one expected: somebody else applied a batch,
// or Redis lost writes. It returns {"conflict", event, key} when a G or H
// check fails, {"wrongtype", event, key, have, want} when a T check fails,
// and {"ok"} once everything is written.
var batchScript = redis.NewScript(listLib + `
local last = ARGV[1]
local stored = redis.call('GET', KEYS[1])
if (ARGV[2] == '1' and stored ~= ARGV[3]) or (ARGV[2] == '0' and stored) then
  if stored then return {'moved', stored} end
  return {'moved'}
end
local newType, score, ttl, trimBelow = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local norig = tonumber(ARGV[8])
local orig = 9
local ops = orig + norig + 1
local checks = ops + tonumber(ARGV[ops - 1])

local i = checks + 1
for _ = 1, tonumber(ARGV[checks]) do
  local kind, key = ARGV[i], ARGV[i + 1]
  if kind == 'T' then
    local have, want = keyType(key), ARGV[i + 2]
    if have ~= 'none' and have ~= want and not (want == 'keys' and (have == 'set' or have == 'zset')) then
      return {'wrongtype', ARGV[i + 3], key, have, want}
    end
    i = i + 4
  elseif kind == 'G' then
    local v = redis.call('GET', key)
    local ok
    if ARGV[i + 2] == '1' then ok = (v == ARGV[i + 3]) else ok = (v == false) end
    if not ok then return {'conflict', ARGV[i + 4], key} end
    i = i + 5
  elseif kind == 'H' then
    local n = tonumber(ARGV[i + 2])
    local ok
    local j = i + 3
    if n < 0 then
      ok = redis.call('EXISTS', key) == 0
    else
      ok = redis.call('HLEN', key) == n
      for _ = 1, n do
        if ok and redis.call('HGET', key, ARGV[j]) ~= ARGV[j + 1] then ok = false end
        j = j + 2
      end
    end
    if not ok then return {'conflict', ARGV[j], key} end
    i = j + 1
  else
    return redis.error_reply('tapline redis sink: unknown check ' .. tostring(kind))
  end
end

-- The type of each key list, as found (or as made now).
local types = {}
local function typeOf(z)
  local t = types[z]
  if not t then
    t = keyType(z)
    if t == 'none' then t = newType end
    types[z] = t
  end
  return t
end
-- each calls f(a, b) for the ranges [a, b] of at most 1000 of 1..n.
local function each(n, f)
  for a = 1, n, 1000 do f(a, math.min(a + 999, n)) end
end
local function track(z, sc, ks)
  if typeOf(z) == 'zset' then
    local a = {}
    for j = 1, #ks do a[2 * j - 1] = sc; a[2 * j] = ks[j] end
    each(#a, function(x, y) redis.call('ZADD', z, unpack(a, x, y)) end)
  else
    each(#ks, function(x, y) redis.call('SADD', z, unpack(ks, x, y)) end)
  end
end
local function untrack(z, ks)
  local cmd = 'SREM'
  if typeOf(z) == 'zset' then cmd = 'ZREM' end
  each(#ks, function(x, y) redis.call(cmd, z, unpack(ks, x, y)) end)
end

-- rows runs the R op at i and returns the index after it.
local function rows(i)
  local fmt, count, nl = ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local lists = {}
  for j = 1, nl do lists[j] = ARGV[i + 3 + j] end
  local fixed = tonumber(ARGV[i + 4 + nl])
  i = i + 5 + nl
  local first = i
  local dels, nd = {}, 0
  if fmt == 'H' and nl == 1 and fixed > 0 then
    -- The common case: hash rows of one table, no deletes, no NULLs
    -- varying the field count.
    local step = 1 + fixed
    for _ = 1, count do
      nd = nd + 1
      dels[nd] = ARGV[i]
      i = i + step
    end
    each(nd, function(x, y) redis.call('DEL', unpack(dels, x, y)) end)
    for k = first, i - 1, step do
      redis.call('HSET', ARGV[k], unpack(ARGV, k + 1, k + fixed))
      if ttl ~= '' then redis.call('PEXPIRE', ARGV[k], ttl) end
    end
    track(lists[1], score, dels)
    return i
  end
  local adds, rems = {}, {}
  for j = 1, nl do adds[j] = {}; rems[j] = {} end
  local li, m = 1, fixed
  for _ = 1, count do
    if nl > 1 then li = tonumber(ARGV[i]); i = i + 1 end
    local key = ARGV[i]
    if fixed < 0 then m = tonumber(ARGV[i + 1]); i = i + 1 end
    i = i + 1 + m
    if m == 0 then
      nd = nd + 1
      dels[nd] = key
      local r = rems[li]; r[#r + 1] = key
    else
      if fmt == 'H' then nd = nd + 1; dels[nd] = key end
      local a = adds[li]; a[#a + 1] = key
    end
  end
  local after = i
  each(nd, function(x, y) redis.call('DEL', unpack(dels, x, y)) end)
  i = first
  for _ = 1, count do
    if nl > 1 then i = i + 1 end
    local key = ARGV[i]
    if fixed < 0 then m = tonumber(ARGV[i + 1]); i = i + 1 end
    i = i + 1
    if m > 0 then
      if fmt == 'J' then
        if ttl ~= '' then redis.call('SET', key, ARGV[i], 'PX', ttl) else redis.call('SET', key, ARGV[i]) end
      else
        redis.call('HSET', key, unpack(ARGV, i, i + m - 1))
        if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
      end
    end
    i = i + m
  end
  for j = 1, nl do
    if #adds[j] > 0 then track(lists[j], score, adds[j]) end
    if #rems[j] > 0 then untrack(lists[j], rems[j]) end
  end
  return after
end

i = ops
while i < checks do
  if ARGV[i] == 'R' then
    i = rows(i)
  else
    local n = tonumber(ARGV[i])
    local cmd = ARGV[i + 1]
    if cmd == 'TRUNCATE' then
      drain(ARGV[i + 2])
      types[ARGV[i + 2]] = nil
      redis.call('SREM', KEYS[3], ARGV[i + 2])
    elseif cmd == 'REGISTER' then
      redis.call('SADD', KEYS[3], ARGV[i + 2])
      if trimBelow ~= '' and typeOf(ARGV[i + 2]) == 'zset' then
        redis.call('ZREMRANGEBYSCORE', ARGV[i + 2], 1, trimBelow)
      end
    elseif cmd == 'TRACK' then
      track(ARGV[i + 2], ARGV[i + 3], {ARGV[i + 4]})
    elseif cmd == 'SREMX' then
      redis.call('SREM', ARGV[i + 2], ARGV[i + 3])
      if redis.call('EXISTS', ARGV[i + 2]) == 0 then untrack(ARGV[i + 4], {ARGV[i + 2]}) end
    else
      redis.call(unpack(ARGV, i + 1, i + n))
    end
    i = i + 1 + n
  end
end

redis.call('SET', KEYS[1], last)
if norig > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, orig, orig + norig - 1)) end
return {'ok'}
`)

// clearScript deletes a view: every key its key lists hold, the lists,
// its position and its origins. The shadow sink runs it when it opens, to
// throw away what an abandoned rebuild left.
//
//	KEYS[1] position  KEYS[2] origins  KEYS[3] the set of key lists
var clearScript = redis.NewScript(listLib + `
for _, z in ipairs(redis.call('SMEMBERS', KEYS[3])) do drain(z) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 'ok'
`)

// promoteScript replaces the live view with the shadow one in one atomic
// step: it deletes every key of the live view, renames every shadow key to
// its live name (keeping its TTL), and moves the shadow position and
// origins to the live ones. Each shadow key list becomes a live one of the
// same type (and scores).
//
//	KEYS[1] live position   KEYS[2] live origins   KEYS[3] live set of key lists
//	KEYS[4] shadow position KEYS[5] shadow origins KEYS[6] shadow set of key lists
//	ARGV[1] the shadow key prefix (stripped to make the live name)
//	ARGV[2] the live key list prefix  ARGV[3] the shadow one
//
// It returns the number of keys moved.
var promoteScript = redis.NewScript(listLib + `
for _, z in ipairs(redis.call('SMEMBERS', KEYS[3])) do drain(z) end
redis.call('DEL', KEYS[3])

local sp, lz, sz = ARGV[1], ARGV[2], ARGV[3]
local moved = 0
for _, z in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local live = lz .. string.sub(z, #sz + 1)
  eachKeys(z, keyType(z), function(ks, sc)
    for j = 1, #ks do
      local k = ks[j]
      if string.sub(k, 1, #sp) == sp and redis.call('EXISTS', k) == 1 then
        local lk = string.sub(k, #sp + 1)
        redis.call('RENAME', k, lk)
        if sc then redis.call('ZADD', live, sc[j], lk) else redis.call('SADD', live, lk) end
        moved = moved + 1
      end
    end
  end)
  if redis.call('EXISTS', live) == 1 then redis.call('SADD', KEYS[3], live) end
end
redis.call('DEL', KEYS[6])

if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[1])
else
  redis.call('DEL', KEYS[1])
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RENAME', KEYS[5], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
return moved
`)
