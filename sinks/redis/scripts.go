package redis

import "github.com/redis/go-redis/v9"

// The Lua scripts the sink runs. A batch is a MULTI/EXEC transaction (see
// write.go); these scripts do what a transaction cannot: find a table's
// keys by their pattern. Redis runs a script, like a transaction, with no
// other client's command in between. They reach keys they are not given
// in KEYS, which standalone Redis allows; Redis Cluster does not, and the
// sink does not support it.
//
// eachMatch calls f(keys) for the keys matching a glob pattern, in runs
// of about 1000 (SCAN MATCH). A key present for the whole scan is found at
// least once, whatever the script changes as it goes (SCAN's guarantee);
// a key may be found twice, so f must take that. SCAN walks the whole
// keyspace: its cost is that of the database, not of the matches.
const scanLib = `
-- Replicate the effects, not the script (the default since Redis 5; SCAN
-- is not deterministic).
if redis.replicate_commands then redis.replicate_commands() end

local function eachMatch(pattern, f)
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = r[1]
    if #r[2] > 0 then f(r[2]) end
  until cursor == '0'
end

local function unlinkMatching(pattern)
  local n = 0
  eachMatch(pattern, function(ks)
    n = n + redis.call('UNLINK', unpack(ks))
  end)
  return n
end
`

// truncateSrc deletes every key of a table: its rows and its index sets,
// all the keys matching its pattern. A batch queues it (EVAL, with the
// source: a script cache emptied by a restart cannot fail it) in its
// transaction where the truncate falls among its events.
//
//	ARGV[1]  the table's glob pattern (tableInfo.pattern)
//
// It returns the number of keys deleted.
const truncateSrc = scanLib + `
return unlinkMatching(ARGV[1])
`

// clearScript deletes a shadow copy: every key under its key prefix, its
// position, origins, table list and format. The shadow sink runs it when
// it opens, to throw away what an abandoned rebuild left.
//
//	KEYS  the shadow's position, origins, table list and format keys
//	ARGV[1]  the glob pattern of every shadow key (prefix, then *)
var clearScript = redis.NewScript(scanLib + `
unlinkMatching(ARGV[1])
redis.call('DEL', unpack(KEYS))
return 'ok'
`)

// promoteScript replaces the live view with the shadow one in one atomic
// step: it deletes every key of the live view (those matching the
// patterns its table list holds), renames every shadow key to its live
// name (keeping its TTL), and moves the shadow position, origins, table
// list and format to the live ones.
//
//	KEYS[1..4]  the live position, origins, table list and format
//	KEYS[5..8]  the shadow ones
//	ARGV[1]     the shadow key prefix, stripped to make a live name
//	ARGV[2]     the glob pattern of every shadow key (prefix, then *)
//
// It returns the number of keys moved.
var promoteScript = redis.NewScript(scanLib + `
for _, pattern in ipairs(redis.call('SMEMBERS', KEYS[3])) do unlinkMatching(pattern) end

local sp = ARGV[1]
local moved = 0
eachMatch(ARGV[2], function(ks)
  for _, k in ipairs(ks) do
    -- SCAN may return a key twice: the second time it is gone.
    if redis.call('EXISTS', k) == 1 then
      redis.call('RENAME', k, string.sub(k, #sp + 1))
      moved = moved + 1
    end
  end
end)

for j = 1, 4 do
  if redis.call('EXISTS', KEYS[j + 4]) == 1 then
    redis.call('RENAME', KEYS[j + 4], KEYS[j])
  else
    redis.call('DEL', KEYS[j])
  end
end
return moved
`)
