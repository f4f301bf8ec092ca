-- wrk script of bench/progress_writes.py: PUT /api/progress/{book}/ for each listener in turn.
-- PROGRESS_LISTENERS names a Lua file returning the listeners, each {token, book, lap length, device};
-- PROGRESS_STEP is how far a listener gets between saves; PROGRESS_REPORT is where done() writes JSON.
local listeners = dofile(os.getenv("PROGRESS_LISTENERS"))
local step = tonumber(os.getenv("PROGRESS_STEP"))
local turn = 0
local positions = {}
local stamps = {}

init = function(args)
  turn = math.random(#listeners)
end

-- The device's clock: now, but never at or before its previous stamp (one device's saves stay ordered).
local function device_clock(index)
  local stamp = math.max(os.time(), (stamps[index] or 0) + 0.001)
  stamps[index] = stamp
  local whole = math.floor(stamp)
  local millis = math.floor((stamp - whole) * 1000 + 0.5)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%03dZ", millis)
end

request = function()
  turn = (turn % #listeners) + 1
  local listener = listeners[turn]
  local position = ((positions[turn] or 0) + step) % listener[3]
  positions[turn] = position
  local body = string.format(
    '{"position_seconds": %.1f, "device_id": "%s", "client_updated_at": "%s"}',
    position, listener[4], device_clock(turn)
  )
  return wrk.format("PUT", "/api/progress/" .. listener[2] .. "/", {
    ["Authorization"] = listener[1], ["Content-Type"] = "application/json"
  }, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  local file = io.open(os.getenv("PROGRESS_REPORT"), "w")
  file:write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50_us": %d, "p95_us": %d, "p99_us": %d}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)
  ))
  file:close()
end
