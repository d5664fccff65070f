-- One POST /v1/votes:batch of $BATCH ballots per call, every ballot from a new voter.
package.path = package.path .. ";" .. (os.getenv("WRK_DIR") or ".") .. "/?.lua"
local common = require("common")
local poll = os.getenv("POLL")
local size = tonumber(os.getenv("BATCH") or "1000")
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("KEY") }
local counter = 0
setup = common.setup
done = common.done

request = function()
  local parts = {}
  for i = 1, size do
    counter = counter + 1
    parts[i] = '{"poll":"' .. poll .. '","voter":"t' .. thread_id .. "-" .. counter ..
      '","answers":{"q1":["' .. (counter % 2 == 0 and "a" or "b") .. '"]}}'
  end
  return wrk.format("POST", "/v1/votes:batch", headers, '{"ballots":[' .. table.concat(parts, ",") .. ']}')
end
