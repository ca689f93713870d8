-- PICLOUD_BATCH events (default 100) per request, over 4 topics.
local n = tonumber(os.getenv("PICLOUD_BATCH") or "100")
local events = {}
for i = 1, n do
  events[i] = string.format(
    '{"topic":"orders.%d","type":"order.created","data":{"id":%d,"total":99.5,"items":["widget","gadget"]}}',
    i % 4, i)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PICLOUD_KEY")
wrk.body = '{"events":[' .. table.concat(events, ",") .. ']}'
