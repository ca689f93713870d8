"""Publishing against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import picloud

from .conftest import ServerFactory


def test_publish_and_read_back(make_server: ServerFactory, storage: str) -> None:
    server = make_server(storage)
    app, key = server.create_app()
    with picloud.Client(server.url, api_key=key, app=app) as client:
        first = client.pubsub.publish("orders", "order.created", data={"id": 1, "total": 9.5})
        second = client.pubsub.publish("orders", data=["no", "type"])
        batch = client.pubsub.publish_batch(
            [
                {"topic": "orders", "type": "order.paid", "data": {"id": 1}},
                {"topic": "audit", "data": None},
            ]
        )

        assert (first["topic"], first["seq"]) == ("orders", 1)
        assert first["id"].startswith("evt_")
        assert second["seq"] == 2
        assert [(e["topic"], e["seq"]) for e in batch] == [("orders", 3), ("audit", 1)]

        page = client.events.read("orders")
        assert page["last_seq"] == 3
        assert [(e["seq"], e["type"], e["data"]) for e in page["events"]] == [
            (1, "order.created", {"id": 1, "total": 9.5}),
            (2, "message", ["no", "type"]),
            (3, "order.paid", {"id": 1}),
        ]
        assert page["events"][0]["id"] == first["id"]
        assert [e["seq"] for e in client.events.iter("orders", after=1, page_size=1)] == [2, 3]
        assert client.events.read("audit")["events"][0]["data"] is None
        assert client.topics.get("orders")["last_seq"] == 3


def test_same_idempotency_key_publishes_once(client: picloud.Client) -> None:
    a = client.pubsub.publish("orders", data={"n": 1}, idempotency_key="order-1042")
    b = client.pubsub.publish("orders", data={"n": 1}, idempotency_key="order-1042")
    c = client.pubsub.publish("orders", data={"n": 2})

    assert a == b
    assert c["seq"] == a["seq"] + 1
    assert [e["seq"] for e in client.events.read("orders")["events"]] == [1, 2]


def test_retry_after_dropped_answer_returns_the_same_seq(
    make_server: ServerFactory, storage: str, proxy_factory
) -> None:
    """The server commits the publish, the answer is lost on the way back (connection
    closed): the SDK retries with the same Idempotency-Key and gets the first answer."""
    server = make_server(storage)
    app, key = server.create_app()
    proxy = proxy_factory(lambda: server.port)
    proxy.drop_answer_once(lambda data: b"POST /v1/apps/" in data and b"/events" in data)
    fast = picloud.RetryPolicy(max_retries=3, backoff=picloud.BackoffPolicy(initial=0.05))
    with picloud.Client(proxy.url, api_key=key, app=app, retry=fast) as client:
        published = client.pubsub.publish("orders", "order.created", data={"id": 7})

    with picloud.Client(server.url, api_key=key, app=app) as direct:
        log = direct.events.read("orders")["events"]
    assert proxy.dropped == 1, "the proxy must have thrown one answer away"
    posts = [r for r in proxy.requests if r.startswith("POST ")]
    assert len(posts) == 2, posts
    assert published["seq"] == 1
    assert [(e["seq"], e["id"], e["data"]) for e in log] == [(1, published["id"], {"id": 7})]


def test_batch_retry_after_dropped_answer_publishes_once(shared_server, proxy_factory) -> None:
    app, key = shared_server.create_app()
    proxy = proxy_factory(lambda: shared_server.port)
    proxy.drop_answer_once(lambda data: data.startswith(b"POST ") and b"/events " in data)
    fast = picloud.RetryPolicy(backoff=picloud.BackoffPolicy(initial=0.05))
    with picloud.Client(proxy.url, api_key=key, app=app, retry=fast) as client:
        answer = client.pubsub.publish_batch([{"topic": "a", "data": 1}, {"topic": "b", "data": 2}])
        assert [(e["topic"], e["seq"]) for e in answer] == [("a", 1), ("b", 1)]
        assert proxy.dropped == 1
        assert client.topics.get("a")["last_seq"] == 1
        assert client.topics.get("b")["last_seq"] == 1
