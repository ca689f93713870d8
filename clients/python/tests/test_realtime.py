"""The realtime consumer against the real server: docs/realtime-protocol.md."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import picloud

from .conftest import ServerFactory
from .support.consumer import Consumer, seqs
from .support.server import PicloudServer, wait_for

FAST = picloud.BackoffPolicy(initial=0.1, maximum=0.5)


def token_topic(client: picloud.Client, name: str) -> None:
    client.topics.create(name)
    client.topics.set_external(name, True)


def test_a_minted_token_streams_live_events(client: picloud.Client) -> None:
    token_topic(client, "orders")
    minted: list[dict[str, Any]] = []

    def provider() -> picloud.types.TokenResponse:
        token = client.pubsub.subscriber_token(["orders"], ttl=600, sub="worker-1")
        minted.append(dict(token))
        return token

    consumer = Consumer(client.realtime.subscribe(["orders"], token_provider=provider))
    try:
        assert consumer.wait_open() == "orders:0"
        published = client.pubsub.publish("orders", "order.created", data={"id": 42})
        [event] = consumer.take(1)
    finally:
        consumer.stop()

    assert isinstance(event, picloud.Event)
    assert (event.topic, event.seq, event.type, event.data) == (
        "orders",
        published["seq"],
        "order.created",
        {"id": 42},
    )
    assert event.published_at == published["published_at"]
    assert event.cursor == "orders:1" == consumer.subscription.cursor
    assert len(minted) == 1
    assert minted[0]["token"].count(".") == 2


def test_the_cursor_resumes_a_worker_where_it_stopped(client: picloud.Client) -> None:
    token_topic(client, "jobs")
    for n in range(1, 4):
        client.pubsub.publish("jobs", data=n)

    def provider() -> picloud.types.TokenResponse:
        return client.pubsub.subscriber_token(["jobs"])

    first = client.realtime.subscribe("jobs", token_provider=provider, cursor="jobs:0")
    got = [next(first), next(first)]
    saved = first.cursor  # what a worker persists after handling an event
    first.close()
    assert seqs(got) == [1, 2]
    assert saved == "jobs:2"

    client.pubsub.publish("jobs", data=4)
    second = Consumer(client.realtime.subscribe("jobs", token_provider=provider, cursor=saved))
    try:
        assert seqs(second.take(2)) == [3, 4]
        second.assert_quiet(0.3)
    finally:
        second.stop()


def test_resume_across_a_server_restart_has_no_gap_and_no_duplicate(
    make_server: ServerFactory, storage: str
) -> None:
    server = make_server(storage)
    app, key = server.create_app()
    errors: list[tuple[str, bool]] = []
    with picloud.Client(server.url, api_key=key, app=app) as client:
        token_topic(client, "orders")
        for n in range(1, 4):
            client.pubsub.publish("orders", data={"n": n})

        subscription = client.realtime.subscribe(
            ["orders"],
            token_provider=lambda: client.pubsub.subscriber_token(["orders"]),
            cursor="orders:0",
            on_error=lambda error, will_retry: errors.append((error.code, will_retry)),
            backoff=FAST,
        )
        consumer = Consumer(subscription)
        try:
            assert seqs(consumer.take(3)) == [1, 2, 3]
            server.kill()  # SIGKILL: the stream just breaks
            wait_for("the consumer to notice the drop", lambda: errors)
            server.restart()
            for n in range(4, 7):
                client.pubsub.publish("orders", data={"n": n})
            rest = consumer.take(3)
            client.pubsub.publish("orders", data={"n": 7})
            rest += consumer.take(1)
            consumer.assert_quiet(0.3)
        finally:
            consumer.stop()

    assert seqs(rest) == [4, 5, 6, 7]
    assert [item.data for item in rest if isinstance(item, picloud.Event)] == [
        {"n": 4},
        {"n": 5},
        {"n": 6},
        {"n": 7},
    ]
    assert subscription.cursor == "orders:7"
    assert all(will_retry for _, will_retry in errors)
    assert {code for code, _ in errors} <= {"network_error", "stream_ended", "timeout"}


def test_a_cursor_past_the_head_is_reset_and_the_reset_is_handed_over(
    client: picloud.Client,
) -> None:
    client.topics.create("news", auth_mode="public")
    client.topics.set_external("news", True)
    client.pubsub.publish("news", data="one")
    consumer = Consumer(client.realtime.subscribe("news", cursor="news:99"))
    try:
        [reset] = consumer.take(1)
        client.pubsub.publish("news", data="two")
        [event] = consumer.take(1)
    finally:
        consumer.stop()
    assert reset == picloud.Reset(reason="cursor_invalid", cursor="news:1", lost=())
    assert isinstance(event, picloud.Event)
    assert (event.seq, event.data) == (2, "two")


def test_pruned_events_are_reported_as_lost(make_server: ServerFactory) -> None:
    server = make_server(env={"PICLOUD_RETENTION_INTERVAL_SEC": "1"})
    app, key = server.create_app()
    with picloud.Client(server.url, api_key=key, app=app) as client:
        client.topics.create("ticks", auth_mode="public", retention={"max_events": 2})
        client.topics.set_external("ticks", True)
        for n in range(1, 6):
            client.pubsub.publish("ticks", data=n)
        wait_for("retention to prune", lambda: client.topics.get("ticks")["event_count"] == 2)

        subscription = client.realtime.subscribe("ticks", cursor="ticks:1")
        items = [next(subscription) for _ in range(3)]
        subscription.close()

    reset, *events = items
    assert reset == picloud.Reset(
        reason="cursor_expired",
        cursor=reset.cursor,
        lost=(picloud.LostRange("ticks", 2, 3),),
    )
    assert seqs(events) == [4, 5]


def test_a_refused_token_is_fetched_again(client: picloud.Client) -> None:
    token_topic(client, "orders")
    tokens = iter(["not-a-token"])
    errors: list[tuple[str, int, bool]] = []

    def provider() -> str:
        return next(tokens, None) or client.pubsub.subscriber_token(["orders"])["token"]

    subscription = client.realtime.subscribe(
        ["orders"],
        token_provider=provider,
        on_error=lambda e, retry: errors.append((e.code, e.status, retry)),
        backoff=FAST,
    )
    consumer = Consumer(subscription)
    try:
        consumer.wait_open()
        client.pubsub.publish("orders", data=1)
        assert seqs(consumer.take(1)) == [1]
    finally:
        consumer.stop()
    assert errors == [("unauthorized", 401, True)]


def test_the_token_is_refreshed_before_it_expires(make_server: ServerFactory) -> None:
    server = make_server(env={"PICLOUD_SUBSCRIBER_TOKEN_TTL_MIN_SEC": "1"})
    app, key = server.create_app()
    with picloud.Client(server.url, api_key=key, app=app) as client:
        token_topic(client, "orders")
        expiries: list[int] = []
        fetched_at: list[float] = []

        def provider() -> picloud.types.TokenResponse:
            token = client.pubsub.subscriber_token(["orders"], ttl=3)
            expiries.append(token["expires_at"])
            fetched_at.append(time.time() * 1000)
            return token

        errors: list[str] = []
        consumer = Consumer(
            client.realtime.subscribe(
                "orders", token_provider=provider, on_error=lambda e, _: errors.append(e.code)
            )
        )
        try:
            consumer.wait_open()
            # `token_expiring` comes half way through a 3 s token: a new one is fetched
            # and the stream switched before the first one expires.
            wait_for("a second token", lambda: len(expiries) >= 2, timeout=10)
            wait_for("the first token to expire", lambda: time.time() * 1000 > expiries[0] + 500)
            client.pubsub.publish("orders", data="late")
            assert seqs(consumer.take(1)) == [1]
        finally:
            consumer.stop()
    assert fetched_at[1] < expiries[0], "the second token must come before the first expires"
    assert errors == []


def test_silence_past_twice_the_heartbeat_reconnects(
    make_server: ServerFactory, proxy_factory
) -> None:
    server = make_server(env={"PICLOUD_REALTIME_HEARTBEAT_SEC": "1"})
    app, key = server.create_app()
    proxy = proxy_factory(lambda: server.port)
    errors: list[str] = []
    with picloud.Client(server.url, api_key=key, app=app) as client:
        client.topics.create("news", auth_mode="public")
        client.topics.set_external("news", True)
        via_proxy = picloud.Client(proxy.url, app=app)
        consumer = Consumer(
            via_proxy.realtime.subscribe(
                "news", on_error=lambda e, _: errors.append(e.code), backoff=FAST
            )
        )
        try:
            consumer.wait_open()
            proxy.freeze_all()  # the connection stays open but nothing comes through
            client.pubsub.publish("news", data="while frozen")
            [event] = consumer.take(1, timeout=10)
        finally:
            consumer.stop()
            via_proxy.close()
    assert isinstance(event, picloud.Event)
    assert event.data == "while frozen"
    assert errors == ["heartbeat_timeout"]
    assert proxy.accepted == 2


def test_unknown_topics_and_missing_tokens_end_the_iteration(client: picloud.Client) -> None:
    with pytest.raises(picloud.NotFoundError) as missing:
        next(client.realtime.subscribe("nope"))
    assert (missing.value.code, missing.value.status) == ("not_found", 404)

    token_topic(client, "orders")
    with pytest.raises(picloud.AuthenticationError) as refused:
        next(client.realtime.subscribe("orders"))
    assert (refused.value.code, refused.value.status) == ("unauthorized", 401)


def test_close_from_another_thread_ends_the_iteration(client: picloud.Client) -> None:
    client.topics.create("idle", auth_mode="public")
    client.topics.set_external("idle", True)
    consumer = Consumer(client.realtime.subscribe("idle"))
    consumer.wait_open()
    closer = threading.Timer(0.1, consumer.subscription.close)
    closer.start()
    assert consumer.finished.wait(5), "the iteration did not end"
    assert consumer.error is None


def test_async_subscription_streams_and_resumes(shared_server: PicloudServer) -> None:
    app, key = shared_server.create_app()

    async def main() -> tuple[list[int], str | None, list[int]]:
        async with picloud.AsyncClient(shared_server.url, api_key=key, app=app) as client:
            await client.topics.create("orders")
            await client.topics.set_external("orders", True)

            async def provider() -> picloud.types.TokenResponse:
                return await client.pubsub.subscriber_token(["orders"])

            subscription = client.realtime.subscribe("orders", token_provider=provider)

            async def publish_when_open() -> None:
                while subscription.cursor is None:  # noqa: ASYNC110 - bounded by wait_for
                    await asyncio.sleep(0.02)
                for n in (1, 2):
                    await client.pubsub.publish("orders", data=n)

            publisher = asyncio.create_task(publish_when_open())
            got: list[int] = []
            async for item in subscription:
                assert isinstance(item, picloud.Event)
                got.append(item.data)
                if len(got) == 2:
                    break
            await publisher
            cursor = subscription.cursor
            await subscription.aclose()

            await client.pubsub.publish("orders", data=3)
            resumed = client.realtime.subscribe("orders", token_provider=provider, cursor=cursor)
            later = [
                item.seq async for item in _take(resumed, 1) if isinstance(item, picloud.Event)
            ]
            await resumed.aclose()
            return got, cursor, later

    got, cursor, later = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == [1, 2]
    assert cursor == "orders:2"
    assert later == [3]


async def _take(subscription: picloud.AsyncSubscription, count: int):  # type: ignore[no-untyped-def]
    taken = 0
    async for item in subscription:
        yield item
        taken += 1
        if taken == count:
            return
