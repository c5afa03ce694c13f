-- wrk script: POST /pusher/auth as pusher-js sends it, rotating realistic
-- tokens and channels read from a token file (bench/node/tokens.js):
--   <jwt> TAB <ch0>,<ch1>,...,<ch9>
-- Lines are read one at a time (the file may hold a million tokens), so
-- every thread opens the file itself; with one wrk thread (the benchmark's
-- setting) each token is used exactly as the mode says.
--
--   wrk ... -s auth.lua URL -- TOKEN_FILE MODE
-- MODE:
--   single    one request per token, its own channel (private-user-<sub>)
--   presence  one request per token, a presence room it belongs to
--   page      ten requests per token, the ten channels of its page
--   batch     one request per token, its ten channels as channel_name[0..9]
--   deny10    like single, but every tenth request asks for another
--             user's channel (refused with 403)
-- The summary line `BENCH key=value ...` is what bench/run.sh reads.

local file, mode, path, host
local request_no = 0
local token, channels_text, previous_user_channel
-- Globals, read by done() through thread:get().
tokens_used = 0
wraps = 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  file = assert(io.open(args[1], "r"))
  mode = args[2] or "single"
  path = "/pusher/auth"
  host = wrk.headers["Host"]
end

local function next_token()
  local line = file:read("*l")
  if not line then
    file:seek("set", 0)
    wraps = wraps + 1
    line = assert(file:read("*l"))
  end
  tokens_used = tokens_used + 1
  local tab = line:find("\t", 1, true)
  previous_user_channel = channels_text and channels_text:match("^[^,]+")
  token = line:sub(1, tab - 1)
  channels_text = line:sub(tab + 1)
end

local function nth_channel(n)
  local i = 0
  for c in channels_text:gmatch("[^,]+") do
    if i == n then
      return c
    end
    i = i + 1
  end
end

local function post(body)
  return "POST " .. path .. " HTTP/1.1\r\nHost: " .. host
    .. "\r\nAuthorization: Bearer " .. token
    .. "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " .. #body
    .. "\r\n\r\n" .. body
end

local function socket_id()
  return (100000 + request_no % 900000) .. "." .. (1000000 + request_no % 9000000)
end

function request()
  request_no = request_no + 1
  local body
  if mode == "page" then
    local k = (request_no - 1) % 10
    if k == 0 then
      next_token()
    end
    body = "socket_id=" .. socket_id() .. "&channel_name=" .. nth_channel(k)
  elseif mode == "batch" then
    next_token()
    local parts = { "socket_id=" .. socket_id() }
    local i = 0
    for c in channels_text:gmatch("[^,]+") do
      parts[#parts + 1] = "channel_name%5B" .. i .. "%5D=" .. c
      i = i + 1
    end
    body = table.concat(parts, "&")
  else
    next_token()
    local channel
    if mode == "presence" then
      channel = nth_channel(1)
    elseif mode == "deny10" and request_no % 10 == 0 and previous_user_channel then
      channel = previous_user_channel
    else
      channel = channels_text:match("^[^,]+")
    end
    body = "socket_id=" .. socket_id() .. "&channel_name=" .. channel
  end
  return post(body)
end

function done(summary, latency, requests)
  local used, wrapped = 0, 0
  for _, t in ipairs(threads) do
    used = used + (t:get("tokens_used") or 0)
    wrapped = wrapped + (t:get("wraps") or 0)
  end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d status_errors=%d socket_errors=%d "
      .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d tokens_used=%d wraps=%d\n",
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    used, wrapped))
end
