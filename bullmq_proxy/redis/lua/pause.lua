-- bullmq-proxy: pauses a queue in the layout of the fleet that uses it (see redis/layout.py).
-- Runs after layout_prelude.lua and takes bullmq's pause keys and arguments, so Queue.pause()
-- runs it unchanged:
--   KEYS[1] wait, KEYS[2] paused, KEYS[3] meta, KEYS[4] prioritized, KEYS[5] events,
--   KEYS[6] delayed, KEYS[7] marker; ARGV[1] "paused"; ARGV[2] "0" to skip the event.
-- A queue in BullMQ 5's layout keeps a paused queue's jobs in the paused list: BullMQ 5's
-- resume RENAMEs that list over `wait`, so anything left in `wait` would be lost then.
local waitKey, pausedKey, metaKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[7]
local base = string.sub(waitKey, 1, -5)

if bmqpSpeaksV5(base, bmqpRealCall("HGET", metaKey, "version")) then
  if bmqpRealCall("EXISTS", pausedKey) == 0 then
    if bmqpRealCall("EXISTS", waitKey) == 1 then
      bmqpRealCall("RENAME", waitKey, pausedKey)
    end
  else
    -- Jobs that waited before the pause go after those added while paused, in their order.
    while true do
      local jobs = bmqpRealCall("LRANGE", waitKey, 0, 999)
      if #jobs == 0 then
        break
      end
      bmqpRealCall("RPUSH", pausedKey, unpack(jobs))
      bmqpRealCall("LTRIM", waitKey, #jobs, -1)
    end
  end
end

bmqpRealCall("HSET", metaKey, "paused", 1)
bmqpRealCall("DEL", markerKey)
if ARGV[2] ~= "0" then
  bmqpRealCall("XADD", eventsKey, "*", "event", "paused")
end
return 0
