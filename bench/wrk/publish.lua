-- One event per request. PICLOUD_KEY: a key with pubsub:publish.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PICLOUD_KEY")
wrk.body = '{"type":"order.created","data":{"id":12345,"total":99.5,"items":["widget","gadget"],"note":"a typical small event"}}'
