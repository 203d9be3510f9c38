-- wrk script for workload A: each request POSTs one job; each thread stops after its quota
-- of responses so that a run sends a bounded number of jobs.
local quota = tonumber(os.getenv("BENCH_QUOTA") or "5000")
local path = os.getenv("BENCH_PATH") or "/queues/bench/jobs"
local token = os.getenv("BENCH_TOKEN") or ""
local answered = 0
local failed = 0

function init(args)
   wrk.method = "POST"
   wrk.path = path
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. token
   wrk.body = '[{"name":"bench","data":{"n":1,"text":"hello"}}]'
end

function response(status, headers, body)
   answered = answered + 1
   if status ~= 200 then failed = failed + 1 end
   if answered >= quota then wrk.thread:stop() end
end

function done(summary, latency, requests)
   io.write(string.format(
      '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
      '"status_errors":%d,"socket_errors":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout))
end
