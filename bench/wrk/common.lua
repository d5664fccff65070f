-- Shared by the wrk scripts: one JSON line of results when the run is done.
local M = {}

function M.done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local other = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"errors_status":%d,"errors_socket":%d}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status, other))
end

-- Gives each wrk thread its own id, so voter ids never repeat across threads.
local next_thread = 0
function M.setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

return M
