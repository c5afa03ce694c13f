-- wrk script for bench/soak.sh: the requests of bench/wrk/auth.lua (loaded
-- as it is, same arguments: TOKEN_FILE MODE), paced. After each answer a
-- connection waits SOAK_DELAY_MS milliseconds before its next request; wrk
-- waits whole milliseconds, so a fractional delay is dithered between the
-- two neighbouring integers (on average exact).
--
--   SOAK_DELAY_MS=4.6 wrk -c256 ... -s paced.lua URL -- TOKEN_FILE page

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "auth.lua")

local period = tonumber(os.getenv("SOAK_DELAY_MS") or "0") or 0
local whole = math.floor(period)
local fraction = period - whole

local auth_init = init
function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 100000)
  auth_init(args)
end

function delay()
  if math.random() < fraction then
    return whole + 1
  end
  return whole
end
