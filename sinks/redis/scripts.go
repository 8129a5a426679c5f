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

// batchScript applies one batch and stores its position.
//
//	KEYS[1]  the position key        KEYS[2]  the origins hash
//	ARGV[1]  the batch's Last position, to store
//	ARGV[2]  1 and ARGV[3] the position the sink expects to be stored, or
//	         0 and ARGV[3] empty when it expects none
//	ARGV[4]  2n, then n origin (key, position) pairs for KEYS[2]
//	then     the number of checks, then the checks:
//	           T key type event         key must be of that type or missing
//	           G key 0|1 value event    GET key must be value (1) or missing (0)
//	           H key n f1 v1 .. event   the hash must hold exactly those n
//	                                    fields (n = -1: must not exist)
//	then     the writes, each as its argument count and its arguments:
//	           any Redis command
//	           TRUNCATE zset tables     delete every key listed in zset, the
//	                                    zset, and its entry in tables
//	           SREMX set member zset    SREM, and drop set from zset when
//	                                    it is left empty
//
// It returns {"moved", stored} (or {"moved"} when none is stored) when the
// stored position is not the one expected: somebody else applied a batch,
// or Redis lost writes. It returns {"conflict", event, key} when a G or H
// check fails, {"wrongtype", event, key, have, want} when a T check fails,
// and {"ok"} once everything is written.
var batchScript = redis.NewScript(`
local function drain(z)
  while true do
    local r = redis.call('ZPOPMIN', z, 500)
    if #r == 0 then return end
    local ks = {}
    for j = 1, #r, 2 do ks[#ks + 1] = r[j] end
    redis.call('DEL', unpack(ks))
  end
end

local last = ARGV[1]
local stored = redis.call('GET', KEYS[1])
if (ARGV[2] == '1' and stored ~= ARGV[3]) or (ARGV[2] == '0' and stored) then
  if stored then return {'moved', stored} end
  return {'moved'}
end

local nargs = #ARGV
local i = 4
local norig = tonumber(ARGV[i])
local orig = i + 1
i = orig + norig
local nchecks = tonumber(ARGV[i])
i = i + 1
for _ = 1, nchecks do
  local kind, key = ARGV[i], ARGV[i + 1]
  if kind == 'T' then
    local have = redis.call('TYPE', key).ok
    if have ~= 'none' and have ~= ARGV[i + 2] then
      return {'wrongtype', ARGV[i + 3], key, have, ARGV[i + 2]}
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

while i <= nargs do
  local n = tonumber(ARGV[i])
  local cmd = ARGV[i + 1]
  if cmd == 'TRUNCATE' then
    drain(ARGV[i + 2])
    redis.call('SREM', ARGV[i + 3], ARGV[i + 2])
  elseif cmd == 'SREMX' then
    redis.call('SREM', ARGV[i + 2], ARGV[i + 3])
    if redis.call('EXISTS', ARGV[i + 2]) == 0 then redis.call('ZREM', ARGV[i + 4], ARGV[i + 2]) end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + 1 + n
end

redis.call('SET', KEYS[1], last)
if norig > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, orig, orig + norig - 1)) end
return {'ok'}
`)

// clearScript deletes a view: every key its tracking sets list, the sets,
// its position and its origins. The shadow sink runs it when it opens, to
// throw away what an abandoned rebuild left.
//
//	KEYS[1] position  KEYS[2] origins  KEYS[3] the set of tracking zsets
var clearScript = redis.NewScript(`
local function drain(z)
  while true do
    local r = redis.call('ZPOPMIN', z, 500)
    if #r == 0 then return end
    local ks = {}
    for j = 1, #r, 2 do ks[#ks + 1] = r[j] end
    redis.call('DEL', unpack(ks))
  end
end
for _, z in ipairs(redis.call('SMEMBERS', KEYS[3])) do drain(z) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 'ok'
`)

// promoteScript replaces the live view with the shadow one in one atomic
// step: it deletes every key of the live view, renames every shadow key to
// its live name (keeping its TTL), and moves the shadow position and
// origins to the live ones.
//
//	KEYS[1] live position   KEYS[2] live origins   KEYS[3] live tracking set
//	KEYS[4] shadow position KEYS[5] shadow origins KEYS[6] shadow tracking set
//	ARGV[1] the shadow key prefix (stripped to make the live name)
//	ARGV[2] the live tracking zset prefix  ARGV[3] the shadow one
//
// It returns the number of keys moved.
var promoteScript = redis.NewScript(`
local function drain(z)
  while true do
    local r = redis.call('ZPOPMIN', z, 500)
    if #r == 0 then return end
    local ks = {}
    for j = 1, #r, 2 do ks[#ks + 1] = r[j] end
    redis.call('DEL', unpack(ks))
  end
end
for _, z in ipairs(redis.call('SMEMBERS', KEYS[3])) do drain(z) end
redis.call('DEL', KEYS[3])

local sp, lz, sz = ARGV[1], ARGV[2], ARGV[3]
local moved = 0
for _, z in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local live = lz .. string.sub(z, #sz + 1)
  while true do
    local r = redis.call('ZPOPMIN', z, 500)
    if #r == 0 then break end
    for j = 1, #r, 2 do
      local k = r[j]
      if string.sub(k, 1, #sp) == sp and redis.call('EXISTS', k) == 1 then
        local lk = string.sub(k, #sp + 1)
        redis.call('RENAME', k, lk)
        redis.call('ZADD', live, r[j + 1], lk)
        moved = moved + 1
      end
    end
  end
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
