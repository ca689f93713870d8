"""Every (method, path) of docs/openapi.json is implemented by a client method, on both
clients; JSON bodies the SDK sends use only the schema's keys and all required ones."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

import picloud

OPENAPI = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text(encoding="utf-8")
)
METHODS = ("get", "post", "put", "patch", "delete")

#: operationId -> a call of the client method that implements it.
CALLS: dict[str, Callable[[Any], Any]] = {
    "healthz": lambda c: c.system.healthz(),
    "metrics": lambda c: c.system.metrics(),
    "openapi": lambda c: c.system.openapi(),
    "readyz": lambda c: c.system.readyz(),
    "sign_in": lambda c: c.admin.sign_in("a@example.com", "pw"),
    "current_session": lambda c: c.admin.session(),
    "sign_out": lambda c: c.admin.sign_out(),
    "stats": lambda c: c.admin.stats(app="shop"),
    "list_apps": lambda c: c.apps.list(),
    "create_app": lambda c: c.apps.create("shop", "Shop"),
    "get_app": lambda c: c.apps.get(),
    "delete_app": lambda c: c.apps.delete("shop"),
    "list_dead_letters": lambda c: c.dead_letters.list(trigger="trg_1", limit=5),
    "get_dead_letter": lambda c: c.dead_letters.get(3),
    "replay_dead_letter": lambda c: c.dead_letters.replay(3),
    "replay_dead_letters": lambda c: c.dead_letters.replay_all(ids=[1, 2], per_second=5),
    "purge_dead_letter": lambda c: c.dead_letters.purge(3),
    "purge_dead_letters": lambda c: c.dead_letters.purge_all(),
    "list_deliveries": lambda c: c.deliveries.list(state="dead", before=10),
    "get_delivery": lambda c: c.deliveries.get(4),
    "retry_delivery": lambda c: c.deliveries.retry(4),
    "publish_batch": lambda c: c.pubsub.publish_batch([{"topic": "t", "data": 1}]),
    "publish": lambda c: c.pubsub.publish("orders", "order.created", data={"id": 1}),
    "create_subscriber_token": lambda c: c.pubsub.subscriber_token(["orders"], 60, "u1"),
    "call_function_get": lambda c: c.functions.call("hello", method="GET", query={"q": "1"}),
    "call_function_post": lambda c: c.functions.call("hello", json={"x": 1}),
    "list_app_keys": lambda c: c.keys.list(),
    "create_app_key": lambda c: c.keys.create("backend", ["pubsub:publish"]),
    "revoke_app_key": lambda c: c.keys.revoke("key_1"),
    "list_instance_keys": lambda c: c.instance_keys.list(),
    "create_instance_key": lambda c: c.instance_keys.create("ops"),
    "revoke_instance_key": lambda c: c.instance_keys.revoke("key_1"),
    "subscribe": lambda c: c.realtime.subscribe(["orders"]),
    "rotate_keys": lambda c: c.realtime.rotate_keys(grace_secs=60),
    "live_subscribers": lambda c: c.realtime.live_subscribers(),
    "list_scripts": lambda c: c.scripts.list(),
    "get_script": lambda c: c.scripts.get("hello"),
    "save_script": lambda c: c.scripts.save("hello", "fn handle(req) { 1 }", access="key"),
    "delete_script": lambda c: c.scripts.delete("hello"),
    "list_script_runs": lambda c: c.scripts.runs("hello", limit=2),
    "test_script": lambda c: c.scripts.test("hello", {"kind": "function"}),
    "list_script_versions": lambda c: c.scripts.versions("hello"),
    "restore_script_version": lambda c: c.scripts.restore("hello", 2),
    "list_sources": lambda c: c.sources.list(),
    "create_source": lambda c: c.sources.create("postgres://relay@db/shop", schema="picloud"),
    "get_source": lambda c: c.sources.get("src_1"),
    "update_source": lambda c: c.sources.update("src_1", enabled=False),
    "delete_source": lambda c: c.sources.delete("src_1"),
    "list_topics": lambda c: c.topics.list(),
    "create_topic": lambda c: c.topics.create("orders", auth_mode="public"),
    "get_topic": lambda c: c.topics.get("orders"),
    "delete_topic": lambda c: c.topics.delete("orders"),
    "set_external": lambda c: c.topics.set_external("orders", True),
    "read_events": lambda c: c.events.read("orders", after=2, limit=10),
    "list_triggers": lambda c: c.triggers.list(),
    "create_trigger": lambda c: c.triggers.create(
        {"kind": "topic", "topic": "orders"},
        {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
        ordered=True,
    ),
    "get_trigger": lambda c: c.triggers.get("trg_1"),
    "update_trigger": lambda c: c.triggers.update("trg_1", enabled=False),
    "delete_trigger": lambda c: c.triggers.delete("trg_1"),
    "reveal_trigger_secret": lambda c: c.triggers.get_secret("trg_1"),
    "rotate_trigger_secret": lambda c: c.triggers.rotate_secret("trg_1"),
}

#: A body every JSON route of the SDK can read its answer from.
ANSWER = {
    key: []
    for key in (
        "apps",
        "topics",
        "triggers",
        "deliveries",
        "dead_letters",
        "keys",
        "scripts",
        "sources",
        "runs",
        "versions",
        "events",
    )
} | {"count": 0, "secret": "whsec_AAAA", "csrf_token": "t", "status": "ok"}


def operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    found = {}
    for template, item in OPENAPI["paths"].items():
        for method in METHODS:
            if method in item:
                found[item[method]["operationId"]] = (method.upper(), template, item[method])
    return found


def template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref")
    return OPENAPI["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else None


def recorder() -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/realtime"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "x"}})
        if request.url.path == "/metrics":
            return httpx.Response(200, text="up 1\n")
        return httpx.Response(200, json=ANSWER)

    return seen, handle


def test_the_table_covers_every_operation_of_the_document() -> None:
    ops = operations()
    assert len(OPENAPI["paths"]) == 41
    assert set(CALLS) == set(ops), {
        "missing": sorted(set(ops) - set(CALLS)),
        "unknown": sorted(set(CALLS) - set(ops)),
    }


def check(operation_id: str, request: httpx.Request) -> None:
    method, template, operation = operations()[operation_id]
    assert request.method == method, operation_id
    raw_path = request.url.raw_path.split(b"?", 1)[0].decode()
    assert template_regex(template).match(raw_path), (operation_id, raw_path, template)
    schema = body_schema(operation)
    if schema is not None and request.content:
        body = json.loads(request.content)
        if "oneOf" in schema:  # the variant named by `kind`
            kinds = {v["properties"]["kind"]["enum"][0]: v for v in schema["oneOf"]}
            schema = kinds[body["kind"]]
        properties = set(schema.get("properties", {}))
        assert set(body) <= properties, (operation_id, set(body) - properties)
        assert set(schema.get("required", [])) <= set(body), operation_id
    documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    if not template.endswith("/functions/{script}"):  # a function takes any query
        assert set(request.url.params.keys()) <= documented, operation_id
    if operation_id in ("publish", "publish_batch"):
        assert request.headers.get("idempotency-key"), "publishes always carry a key"


@pytest.mark.parametrize("operation_id", sorted(CALLS))
def test_sync_client_calls_the_documented_route(operation_id: str) -> None:
    seen, handle = recorder()
    client = picloud.Client(
        "http://127.0.0.1:9", api_key="pk_test", app="shop", transport=httpx.MockTransport(handle)
    )
    result = CALLS[operation_id](client)
    if isinstance(result, picloud.Subscription):
        with pytest.raises(picloud.NotFoundError):
            next(iter(result))
    assert len(seen) == 1, [r.url for r in seen]
    check(operation_id, seen[0])


@pytest.mark.parametrize("operation_id", sorted(CALLS))
def test_async_client_calls_the_documented_route(operation_id: str) -> None:
    seen, handle = recorder()

    async def main() -> None:
        client = picloud.AsyncClient(
            "http://127.0.0.1:9",
            api_key="pk_test",
            app="shop",
            transport=httpx.MockTransport(handle),
        )
        result = CALLS[operation_id](client)
        if isinstance(result, picloud.AsyncSubscription):
            with pytest.raises(picloud.NotFoundError):
                await result.__anext__()
        else:
            assert inspect.isawaitable(result)
            await result
        await client.aclose()

    asyncio.run(main())
    assert len(seen) == 1
    check(operation_id, seen[0])


def test_both_clients_have_the_same_namespaces_and_methods() -> None:
    sync = picloud.Client("http://127.0.0.1:9", app="a")
    asynchronous = picloud.AsyncClient("http://127.0.0.1:9", app="a")
    for name, namespace in vars(sync).items():
        if name.startswith("_") or not hasattr(namespace, "_t"):
            continue
        methods = {m for m in dir(namespace) if not m.startswith("_")}
        assert methods == {m for m in dir(getattr(asynchronous, name)) if not m.startswith("_")}
        assert methods, name
