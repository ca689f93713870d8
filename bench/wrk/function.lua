-- POST an empty JSON object to an HTTP function (bench/functions.sh).
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
