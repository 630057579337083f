// Lua scripts: every read-modify-write the contract needs atomic runs as one script. Keys a script learns
// only while running (another node's index) are built from the hash tag passed in ARGV, so they fall in
// the same Cluster slot as the declared KEYS.

/** SADD/SREM in chunks: Lua's unpack() has a stack limit. */
const CHUNKED = `
local function chunked(cmd, key, from, to)
  for i = from, to, 1000 do redis.call(cmd, key, unpack(ARGV, i, math.min(i + 999, to))) end
end
local function nodeOf(owner) return cjson.decode(owner)[1] end
-- Drops the session owners a node held (it died, or this is its restart), keeping the stored sessions.
local function releaseOwners(tag, nodeSessions, node)
  local released = 0
  for _, cid in ipairs(redis.call('SMEMBERS', nodeSessions)) do
    local sess = tag .. 'sess:' .. cid
    local owner = redis.call('HGET', sess, 'owner')
    if owner and nodeOf(owner) == node then
      redis.call('HDEL', sess, 'owner')
      released = released + 1
    end
  end
  redis.call('DEL', nodeSessions)
  return released
end
`;

export interface ScriptDef {
  numberOfKeys: number;
  lua: string;
}

export const scripts = {
  /** KEYS: members, heartbeat, routes, nodeSessions. ARGV: node, incarnation, ttlMs, fresh, routeChannel,
   *  resetPayload, tag, ...routeMembers. Registers the node with exactly these routes; on a fresh start
   *  also releases what a previous life of this node id left behind. Returns {released owners, wills}. */
  register: {
    numberOfKeys: 4,
    lua: `${CHUNKED}
local released, wills = 0, 0
if ARGV[4] == '1' then
  released = releaseOwners(ARGV[7], KEYS[4], ARGV[1])
  wills = redis.call('SCARD', ARGV[7] .. 'node-wills:' .. ARGV[1])
end
redis.call('DEL', KEYS[3])
if #ARGV >= 8 then chunked('SADD', KEYS[3], 8, #ARGV) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {released, wills}`,
  },

  /** KEYS: members, heartbeat, routes. ARGV: node, routeChannel, payload. A graceful leave. */
  leave: {
    numberOfKeys: 3,
    lua: `
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`,
  },

  /** KEYS: members. ARGV: tag. Every live member (heartbeat present) with its routes. */
  snapshot: {
    numberOfKeys: 1,
    lua: `
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'hb:' .. node) == 1 then
    out[#out + 1] = {node, redis.call('SMEMBERS', ARGV[1] .. 'routes:' .. node)}
  end
end
return out`,
  },

  /** KEYS: members, heartbeat. ARGV: node, incarnation, ttlMs, tag. Renews this node's heartbeat and
   *  reports whether it is still a member (it is not if others declared it dead), then every member
   *  with 1 when its heartbeat is present. */
  beat: {
    numberOfKeys: 2,
    lua: `
local present = redis.call('SISMEMBER', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local out = {present}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = node
  out[#out + 1] = redis.call('EXISTS', ARGV[4] .. 'hb:' .. node)
end
return out`,
  },

  /** KEYS: members, heartbeat, routes, nodeSessions of the dead node. ARGV: dead node, routeChannel,
   *  payload, tag. Of all survivors racing, exactly one gets 1: membership is the claim. */
  reap: {
    numberOfKeys: 4,
    lua: `${CHUNKED}
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
releaseOwners(ARGV[4], KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`,
  },

  /** KEYS: routes. ARGV: routeChannel, payload, ...ops ('+' or '-' followed by a route member). The
   *  change and its announcement are one step, so replicas replaying announcements after a snapshot
   *  converge. */
  routeOps: {
    numberOfKeys: 1,
    lua: `
for i = 3, #ARGV do
  local op, member = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2)
  if op == '+' then redis.call('SADD', KEYS[1], member) else redis.call('SREM', KEYS[1], member) end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`,
  },

  /** KEYS: session, queue, sessions, nodeSessions of the new owner. ARGV: clientId, owner, cleanStart,
   *  calling node, tag, node channel prefix, owner node. Returns {previous owner, stored session}; tells
   *  a previous owner on another node than the caller to end its connection (the caller tells its own). */
  claimSession: {
    numberOfKeys: 4,
    lua: `${CHUNKED}
local prev = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], 'stored')
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
end
-- A connected session does not expire; saveSession() sets the expiry again when it goes offline.
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
if prev and prev ~= ARGV[2] then
  local node = nodeOf(prev)
  if node ~= ARGV[7] then redis.call('SREM', ARGV[5] .. 'node-sessions:' .. node, ARGV[1]) end
  if node ~= ARGV[4] then
    redis.call('PUBLISH', ARGV[6] .. node, '\\3' .. cjson.encode({c = ARGV[1], p = prev, b = ARGV[2]}))
  end
end
return {prev or false, redis.call('HGET', KEYS[1], 'stored') or false}`,
  },

  /** KEYS: session, nodeSessions of owner. ARGV: owner, clientId. Takes a stored session nobody owns;
   *  returns it, or false. */
  adoptSession: {
    numberOfKeys: 2,
    lua: `
if redis.call('HEXISTS', KEYS[1], 'owner') == 1 then return false end
local stored = redis.call('HGET', KEYS[1], 'stored')
if not stored then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return stored`,
  },

  /** KEYS: session, nodeSessions of owner. ARGV: owner, clientId. Compare-and-delete. */
  releaseSession: {
    numberOfKeys: 2,
    lua: `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'owner')
redis.call('SREM', KEYS[2], ARGV[2])
return 1`,
  },

  /** KEYS: session, queue, sessions. ARGV: stored JSON, clientId, expire-at ms or ''. */
  saveSession: {
    numberOfKeys: 3,
    lua: `
redis.call('HSET', KEYS[1], 'stored', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return 1`,
  },

  /** KEYS: session, queue. ARGV: limit, ...messages. Returns how many were dropped. */
  enqueue: {
    numberOfKeys: 2,
    lua: `${CHUNKED}
local n = #ARGV - 1
if redis.call('HEXISTS', KEYS[1], 'stored') == 0 then return n end
local take = math.min(n, tonumber(ARGV[1]) - redis.call('LLEN', KEYS[2]))
if take <= 0 then return n end
chunked('RPUSH', KEYS[2], 2, take + 1)
-- The queue lives as long as its session.
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return n - take`,
  },

  /** KEYS: sessions. ARGV: tag. Stored sessions without an owner; forgets index entries that expired. */
  offlineSessions: {
    numberOfKeys: 1,
    lua: `
local out = {}
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. 'sess:' .. cid, 'owner', 'stored')
  if not v[2] then redis.call('SREM', KEYS[1], cid)
  elseif not v[1] then out[#out + 1] = v[2] end
end
return out`,
  },

  /** KEYS: will, nodeWills of the owner. ARGV: owner, will JSON, clientId, tag, owner node. */
  setWill: {
    numberOfKeys: 2,
    lua: `${CHUNKED}
local old = redis.call('HGET', KEYS[1], 'owner')
if old and nodeOf(old) ~= ARGV[5] then redis.call('SREM', ARGV[4] .. 'node-wills:' .. nodeOf(old), ARGV[3]) end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'data', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1`,
  },

  /** KEYS: will. ARGV: owner or '' for any, clientId, tag, claim ('1' returns the will). Removes the
   *  will (if owned by owner); returns it (claim) or 1, else false/0. */
  takeWill: {
    numberOfKeys: 1,
    lua: `${CHUNKED}
local v = redis.call('HMGET', KEYS[1], 'owner', 'data')
if not v[1] or (ARGV[1] ~= '' and v[1] ~= ARGV[1]) then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[3] .. 'node-wills:' .. nodeOf(v[1]), ARGV[2])
if ARGV[4] == '1' then return v[2] end
return 1`,
  },

  /** KEYS: nodeWills. ARGV: node, tag. The node's wills; drops stale index entries. */
  willsOf: {
    numberOfKeys: 1,
    lua: `${CHUNKED}
local out = {}
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[2] .. 'will:' .. cid, 'owner', 'data')
  if v[1] and nodeOf(v[1]) == ARGV[1] then out[#out + 1] = v[2] else redis.call('SREM', KEYS[1], cid) end
end
return out`,
  },
} satisfies Record<string, ScriptDef>;

export type ScriptName = keyof typeof scripts;
