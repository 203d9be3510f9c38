-- bullmq-proxy: runs before one of bullmq's own scripts, in the same chunk (see redis/layout.py).
--
-- bullmq 3.x writes BullMQ 6's layout: a paused queue keeps its jobs in `wait` under
-- meta.paused. BullMQ 5 keeps them in a `paused` list and, on resume, RENAMEs that list over
-- `wait`, so a job pushed to `wait` during a BullMQ 5 pause would be lost. The script below
-- sees `redis` as a table whose `call` sends every push to `<queue>:wait` (and every LREM
-- from it) to `<queue>:paused` instead, for each queue that is paused in BullMQ 5's layout.
-- The decision is read here, inside the script that writes, so a Node pause cannot slip
-- between the check and the write. `bmqpForceV5` is set on the line before this file.
local bmqpRedis = redis
local bmqpRealCall = bmqpRedis.call
local bmqpTargets = {}

-- Whether the queue whose keys start with `base` is in BullMQ 5's layout: its meta.version
-- (written by every Node BullMQ Queue) names the major; without one, an existing paused
-- list is BullMQ 5's.
local function bmqpSpeaksV5(base, version)
  if bmqpForceV5 then
    return true
  end
  local major = tonumber(string.match(version or "", "^bullmq:(%d+)%."))
  if major ~= nil then
    return major <= 5
  end
  return bmqpRealCall("EXISTS", base .. "paused") == 1
end

-- The list that really holds the waiting jobs of the queue whose wait list is `key`.
local function bmqpWaitTarget(key)
  if type(key) ~= "string" or string.sub(key, -5) ~= ":wait" then
    return key
  end
  local target = bmqpTargets[key]
  if target == nil then
    target = key
    local base = string.sub(key, 1, -5)
    local meta = bmqpRealCall("HMGET", base .. "meta", "paused", "version")
    if meta[1] and bmqpSpeaksV5(base, meta[2]) then
      target = base .. "paused"
    end
    bmqpTargets[key] = target
  end
  return target
end

local bmqpPushes = {LPUSH = true, RPUSH = true, LPUSHX = true, RPUSHX = true}

local function bmqpCall(command, key, ...)
  local name = string.upper(command)
  if bmqpPushes[name] then
    return bmqpRealCall(command, bmqpWaitTarget(key), ...)
  end
  if name == "LREM" then
    local target = bmqpWaitTarget(key)
    if target ~= key then
      -- A BullMQ 5 pause moved the job out of `wait`; look there second, for lists
      -- written before the pause was known.
      local removed = bmqpRealCall(command, target, ...)
      if removed ~= 0 then
        return removed
      end
    end
  elseif name == "RPOPLPUSH" or name == "LMOVE" then
    local destination, rest = ..., {select(2, ...)}
    return bmqpRealCall(command, key, bmqpWaitTarget(destination), unpack(rest))
  end
  return bmqpRealCall(command, key, ...)
end

local redis = setmetatable({call = bmqpCall}, {__index = bmqpRedis})
