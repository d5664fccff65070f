-- One single-vote request per call, each from a new voter: POST /v1/polls/$POLL/votes.
package.path = package.path .. ";" .. (os.getenv("WRK_DIR") or ".") .. "/?.lua"
local common = require("common")
local poll = os.getenv("POLL")
local headers = { ["Content-Type"] = "application/json" }
local counter = 0
setup = common.setup
done = common.done

request = function()
  counter = counter + 1
  local body = '{"voter":"t' .. thread_id .. "-" .. counter .. '","answers":{"q1":["' ..
    (counter % 2 == 0 and "a" or "b") .. '"]}}'
  return wrk.format("POST", "/v1/polls/" .. poll .. "/votes", headers, body)
end
