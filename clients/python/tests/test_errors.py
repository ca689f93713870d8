"""Errors map to PicloudError with the API's code, status and request id; retries."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

import picloud
from picloud.errors import error_class

from .conftest import ServerFactory
from .support.consumer import Consumer
from .support.server import PicloudServer, wait_for

ERROR_CODES = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text()
)["components"]["schemas"]["ErrorCode"]["enum"]

#: Codes no client request can provoke from a healthy server: `admin_exists` (admins
#: are created with the CLI, not the API), `internal` (a server bug) and
#: `request_timeout` (the body must stall mid-request; httpx sends it whole).
UNPROVOKABLE = {"admin_exists": 409, "internal": 500, "request_timeout": 408}
#: Provoked against the real server, by the test named.
DIRECT = "test_codes_a_client_can_provoke"
STREAMS = "test_stream_limits_report_rate_limited_and_unavailable"
PROVOKED_BY = {
    "invalid_json": DIRECT,
    "invalid_request": DIRECT,
    "unsupported_media_type": DIRECT,
    "payload_too_large": DIRECT,
    "unauthorized": DIRECT,
    "forbidden": DIRECT,
    "not_found": DIRECT,
    "method_not_allowed": DIRECT,
    "app_not_found": DIRECT,
    "key_not_found": DIRECT,
    "app_exists": DIRECT,
    "topic_not_found": DIRECT,
    "topic_exists": DIRECT,
    "trigger_not_found": DIRECT,
    "delivery_not_found": DIRECT,
    "dead_letter_not_found": DIRECT,
    "script_not_found": DIRECT,
    "source_not_found": DIRECT,
    "script_compile_error": DIRECT,
    "headers_too_large": DIRECT,
    "rate_limited": STREAMS,
    "unavailable": STREAMS,
}


def expect(
    provoked: set[str],
    code: str,
    status: int,
    cls: type[picloud.PicloudError],
    call: Callable[[], Any],
) -> None:
    with pytest.raises(picloud.PicloudError) as caught:
        call()
    error = caught.value
    assert (error.code, error.status) == (code, status), repr(error)
    assert isinstance(error, cls), type(error)
    assert error.request_id, "the server's x-request-id is kept"
    assert error.message
    provoked.add(code)


def test_codes_a_client_can_provoke(shared_server: PicloudServer) -> None:
    app, key = shared_server.create_app()
    provoked: set[str] = set()
    no_retry = picloud.RetryPolicy(max_retries=0)
    c = picloud.Client(shared_server.url, api_key=key, app=app, retry=no_retry)
    admin = picloud.Client(shared_server.url, api_key=shared_server.admin_key, retry=no_retry)
    topics = f"/v1/apps/{app}/topics"
    c.topics.create("orders")
    read_key = c.keys.create("reader", ["app:read"])["key"]
    fresh = picloud.Client(shared_server.url, api_key=key, app=app, retry=no_retry)

    expect(
        provoked,
        "invalid_json",
        400,
        picloud.InvalidRequestError,
        lambda: c.request(
            "POST", topics, content="{", headers={"content-type": "application/json"}
        ),
    )
    expect(
        provoked,
        "invalid_request",
        400,
        picloud.InvalidRequestError,
        lambda: c.pubsub.publish("orders", "not a type!", data=1),
    )
    expect(
        provoked,
        "unsupported_media_type",
        415,
        picloud.InvalidRequestError,
        lambda: c.request("POST", topics, content="x", headers={"content-type": "text/plain"}),
    )
    expect(
        provoked,
        "payload_too_large",
        413,
        picloud.InvalidRequestError,
        lambda: c.pubsub.publish("orders", data="x" * 300_000),
    )
    expect(
        provoked,
        "unauthorized",
        401,
        picloud.AuthenticationError,
        lambda: picloud.Client(shared_server.url, api_key="pk_nope", app=app).topics.list(),
    )
    expect(
        provoked,
        "forbidden",
        403,
        picloud.PermissionDeniedError,
        lambda: picloud.Client(shared_server.url, api_key=read_key, app=app).topics.create("x"),
    )
    expect(provoked, "not_found", 404, picloud.NotFoundError, lambda: c.request("GET", "/v1/nope"))
    expect(
        provoked,
        "method_not_allowed",
        405,
        picloud.InvalidRequestError,
        lambda: c.request("PUT", topics, json={}),
    )
    expect(
        provoked,
        "app_not_found",
        404,
        picloud.NotFoundError,
        lambda: admin.for_app("no-such-app").apps.get(),
    )
    expect(provoked, "key_not_found", 404, picloud.NotFoundError, lambda: c.keys.revoke("key_nope"))
    expect(provoked, "app_exists", 409, picloud.ConflictError, lambda: admin.apps.create(app))
    expect(provoked, "topic_not_found", 404, picloud.NotFoundError, lambda: c.topics.get("nope"))
    expect(provoked, "topic_exists", 409, picloud.ConflictError, lambda: c.topics.create("orders"))
    expect(
        provoked,
        "trigger_not_found",
        404,
        picloud.NotFoundError,
        lambda: c.triggers.get("trg_" + "0" * 32),
    )
    expect(
        provoked, "delivery_not_found", 404, picloud.NotFoundError, lambda: c.deliveries.get(424242)
    )
    expect(
        provoked,
        "dead_letter_not_found",
        404,
        picloud.NotFoundError,
        lambda: c.dead_letters.get(424242),
    )
    expect(provoked, "script_not_found", 404, picloud.NotFoundError, lambda: c.scripts.get("nope"))
    expect(
        provoked, "source_not_found", 404, picloud.NotFoundError, lambda: c.sources.get("src_nope")
    )
    expect(
        provoked,
        "script_compile_error",
        400,
        picloud.InvalidRequestError,
        lambda: c.scripts.save("broken", "fn handle(req) {\n  let x = ;\n}"),
    )
    expect(
        provoked,
        "headers_too_large",
        431,
        picloud.InvalidRequestError,
        # On a new connection (the first head of a connection gets the JSON answer).
        lambda: fresh.request("GET", topics, headers={"x-big": "a" * 40_000}),
    )
    with pytest.raises(picloud.PicloudError) as compile_error:
        c.scripts.save("broken", "fn handle(req) {\n  let x = ;\n}")
    assert compile_error.value.line == 2
    assert compile_error.value.column is not None
    c.close()
    admin.close()
    fresh.close()
    assert provoked == {k for k, v in PROVOKED_BY.items() if v == DIRECT}


def test_stream_limits_report_rate_limited_and_unavailable(make_server: ServerFactory) -> None:
    """Too many streams for an app: 429; for the server: 503. Both are retried, and
    reported to on_error with the code, status and class."""
    server = make_server(
        env={
            "PICLOUD_REALTIME_MAX_CONNECTIONS": "2",
            "PICLOUD_REALTIME_MAX_CONNECTIONS_PER_APP": "1",
        }
    )
    clients = []
    for _ in range(3):
        app, key = server.create_app()
        client = picloud.Client(server.url, api_key=key, app=app)
        client.topics.create("news", auth_mode="public")
        client.topics.set_external("news", True)
        clients.append(client)
    consumers: list[Consumer] = []

    def open_stream(client: picloud.Client) -> None:
        consumer = Consumer(client.realtime.subscribe("news"))
        consumers.append(consumer)
        consumer.wait_open()

    def refused(client: picloud.Client) -> tuple[picloud.PicloudError, bool]:
        seen: list[tuple[picloud.PicloudError, bool]] = []
        consumer = Consumer(
            client.realtime.subscribe(
                "news",
                on_error=lambda e, retry: seen.append((e, retry)),
                backoff=picloud.BackoffPolicy(initial=0.05, maximum=0.1),
            )
        )
        wait_for("a refusal", lambda: seen)
        consumer.stop()
        return seen[0]

    provoked = set()
    try:
        open_stream(clients[0])  # 1 of 2 on the server, 1 of 1 for the app
        error, will_retry = refused(clients[0])
        assert (error.code, error.status, will_retry) == ("rate_limited", 429, True)
        assert isinstance(error, picloud.RateLimitedError)
        assert error.request_id
        provoked.add(error.code)

        open_stream(clients[1])  # 2 of 2 on the server
        error, will_retry = refused(clients[2])
        assert (error.code, error.status, will_retry) == ("unavailable", 503, True)
        assert isinstance(error, picloud.ServerError)
        assert error.retry_after is not None
        provoked.add(error.code)
    finally:
        for consumer in consumers:
            consumer.stop()
        for client in clients:
            client.close()
    assert provoked == {k for k, v in PROVOKED_BY.items() if v == STREAMS}


@pytest.mark.parametrize(("code", "status"), sorted(UNPROVOKABLE.items()))
def test_codes_no_request_can_provoke_map_the_same_way(code: str, status: int) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": code, "message": f"{code} happened"}}
        return httpx.Response(status, json=body, headers={"x-request-id": "req-1"})

    client = picloud.Client(
        "http://127.0.0.1:9",
        api_key="pk_x",
        app="a",
        retry=picloud.RetryPolicy(max_retries=0),
        transport=httpx.MockTransport(handle),
    )
    with pytest.raises(picloud.PicloudError) as caught:
        client.topics.list()
    error = caught.value
    assert (error.code, error.status, error.message, error.request_id) == (
        code,
        status,
        f"{code} happened",
        "req-1",
    )
    assert isinstance(error, error_class(status))
    assert isinstance(error, picloud.ConflictError if status == 409 else picloud.ServerError)


def test_every_documented_code_is_provoked_or_listed_as_unprovokable() -> None:
    assert len(ERROR_CODES) == 25
    assert set(ERROR_CODES) == set(PROVOKED_BY) | set(UNPROVOKABLE), {
        "neither": sorted(set(ERROR_CODES) - set(PROVOKED_BY) - set(UNPROVOKABLE))
    }
    assert not set(PROVOKED_BY) & set(UNPROVOKABLE)


def test_an_answer_that_is_not_an_error_body_still_maps() -> None:
    client = picloud.Client(
        "http://127.0.0.1:9",
        app="a",
        retry=picloud.RetryPolicy(max_retries=0),
        transport=httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway")),
    )
    with pytest.raises(picloud.ServerError) as caught:
        client.topics.list()
    assert (caught.value.code, caught.value.status) == ("http_502", 502)
    assert "bad gateway" in caught.value.message


# -- retries --------------------------------------------------------------------------
FAST = picloud.RetryPolicy(max_retries=3, backoff=picloud.BackoffPolicy(initial=0.01, maximum=0.02))


def scripted(*answers: Any) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A transport answering each request with the next of ``answers``: a response,
    or an exception to raise."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, httpx.MockTransport(handle)


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def failure(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


def test_429_is_retried_after_retry_after() -> None:
    seen, transport = scripted(
        failure(429, "rate_limited", **{"retry-after": "0.3"}), ok({"topics": []})
    )
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    started = time.monotonic()
    assert client.topics.list() == []
    assert time.monotonic() - started >= 0.3
    assert len(seen) == 2


def test_a_retry_after_beyond_the_limit_is_not_waited_for() -> None:
    seen, transport = scripted(failure(429, "rate_limited", **{"retry-after": "600"}))
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    with pytest.raises(picloud.RateLimitedError) as caught:
        client.topics.list()
    assert caught.value.retry_after == 600
    assert len(seen) == 1


def test_5xx_is_retried_for_reads_not_for_creates() -> None:
    seen, transport = scripted(
        failure(503, "unavailable"), failure(500, "internal"), ok({"topics": []})
    )
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    assert client.topics.list() == []
    assert len(seen) == 3

    seen, transport = scripted(failure(503, "unavailable"))
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    with pytest.raises(picloud.ServerError):
        client.topics.create("orders")
    assert len(seen) == 1


def test_a_publish_is_retried_with_one_idempotency_key() -> None:
    answer = {"topic": "t", "seq": 1, "id": "evt_1", "published_at": 1, "deliveries": 0}
    seen, transport = scripted(
        httpx.RemoteProtocolError("server disconnected"),
        failure(500, "internal"),
        httpx.ReadTimeout("slow"),
        httpx.Response(201, json=answer),
    )
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    assert client.pubsub.publish("t", data=1) == answer
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(seen) == 4
    assert len(keys) == 1
    assert keys.pop().startswith("py_")

    seen, transport = scripted(httpx.RemoteProtocolError("x"), httpx.Response(201, json=answer))
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    client.pubsub.publish("t", data=1, idempotency_key="mine")
    assert [r.headers["idempotency-key"] for r in seen] == ["mine", "mine"]


def test_a_create_is_retried_only_when_it_was_never_sent() -> None:
    topic = {"name": "orders"}
    seen, transport = scripted(httpx.ConnectError("refused"), httpx.Response(201, json=topic))
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    assert client.topics.create("orders") == topic
    assert len(seen) == 2

    seen, transport = scripted(httpx.RemoteProtocolError("server disconnected"))
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    with pytest.raises(picloud.TransportError) as caught:
        client.topics.create("orders")
    assert (caught.value.code, caught.value.status) == ("network_error", 0)
    assert len(seen) == 1


def test_retries_give_up_with_the_last_error() -> None:
    seen, transport = scripted(*[failure(503, "unavailable")] * 4)
    client = picloud.Client("http://127.0.0.1:9", app="a", retry=FAST, transport=transport)
    with pytest.raises(picloud.ServerError) as caught:
        client.topics.get("orders")
    assert caught.value.code == "unavailable"
    assert len(seen) == 4  # the first attempt and 3 retries


def test_async_client_retries_too() -> None:
    import asyncio

    answer = {"topic": "t", "seq": 1, "id": "evt_1", "published_at": 1, "deliveries": 0}
    seen: list[httpx.Request] = []
    queue: list[Any] = [httpx.RemoteProtocolError("x"), httpx.Response(201, json=answer)]

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def main() -> Any:
        async with picloud.AsyncClient(
            "http://127.0.0.1:9", app="a", retry=FAST, transport=httpx.MockTransport(handle)
        ) as client:
            return await client.pubsub.publish("t", data=1)

    assert asyncio.run(main()) == answer
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]


# -- the client itself ----------------------------------------------------------------
def test_user_agent_and_no_key_in_repr_or_errors() -> None:
    secret = "pk_s3cr3tS3cr3tS3cr3t"
    seen, transport = scripted(failure(401, "unauthorized"))
    client = picloud.Client(
        "http://127.0.0.1:9", api_key=secret, app="shop", retry=FAST, transport=transport
    )
    with pytest.raises(picloud.AuthenticationError) as caught:
        client.topics.list()
    assert seen[0].headers["user-agent"] == f"picloud-python/{picloud.__version__}"
    assert seen[0].headers["authorization"] == f"Bearer {secret}"
    shown = " ".join(
        [repr(client), str(client), repr(client._transport), str(caught.value), repr(caught.value)]
    )
    assert "s3cr3t" not in shown
    assert "pk_***" in repr(client)
    assert "s3cr3t" not in repr(picloud.AsyncClient("http://127.0.0.1:9", api_key=secret))


def test_one_connection_serves_many_requests(shared_server: PicloudServer, proxy_factory) -> None:
    app, key = shared_server.create_app()
    proxy = proxy_factory(lambda: shared_server.port)
    with picloud.Client(proxy.url, api_key=key, app=app) as client:
        for n in range(5):
            client.pubsub.publish("orders", data=n)
        assert client.topics.get("orders")["last_seq"] == 5
    assert proxy.accepted == 1


def test_a_server_that_never_answers_times_out() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        client = picloud.Client(
            f"http://127.0.0.1:{port}",
            app="a",
            timeout=0.3,
            retry=picloud.RetryPolicy(max_retries=0),
        )
        started = time.monotonic()
        with pytest.raises(picloud.TransportError) as caught:
            client.topics.list()
        assert caught.value.code == "timeout"
        assert time.monotonic() - started < 5
    finally:
        silent.close()
