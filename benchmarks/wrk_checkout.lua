-- wrk script for the serving throughput benchmark (benchmarks/serving_throughput.py, --wrk):
-- cycles through v1 checkout bodies, one compact JSON document per line of the file given after
-- "--", e.g. wrk -t1 -c16 -d30s --latency -s benchmarks/wrk_checkout.lua URL -- bodies.jsonl
-- and counts answers by HTTP status (printed at the end as "status <code> <count>").

local bodies = {}
local next_body = 1
counts = {}
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then
         table.insert(bodies, line)
      end
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   counts = {}
end

function request()
   local body = bodies[next_body]
   next_body = next_body % #bodies + 1
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local c = t:get("counts") or {}
      for code, n in pairs(c) do
         total[code] = (total[code] or 0) + n
      end
   end
   for code, n in pairs(total) do
      io.write(string.format("status %d %d\n", code, n))
   end
end
