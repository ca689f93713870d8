"""Management namespaces against the real server: answers fit the generated types."""

from __future__ import annotations

from typing import Any

import picloud
from picloud import types

from .support.server import PicloudServer, wait_for


def conforms(value: dict[str, Any], typed_dict: Any) -> None:
    """``value`` has every required key of ``typed_dict`` and no key it does not know."""
    keys = set(value)
    assert set(typed_dict.__required_keys__) <= keys, (typed_dict.__name__, keys)
    known = set(typed_dict.__required_keys__) | set(typed_dict.__optional_keys__)
    assert keys <= known, (typed_dict.__name__, keys - known)


def test_scripts_and_functions(client: picloud.Client) -> None:
    source = 'fn handle(req) {\n  #{ status: 200, body: #{ hello: req.query["name"] } }\n}'
    saved = client.scripts.save("hello", source, access="key")
    conforms(saved, types.Script)
    assert (saved["version"], saved["access"]) == (1, "key")
    answer = client.functions.call("hello", method="GET", query={"name": "py"})
    assert answer.status == 200
    assert answer.json() == {"hello": "py"}
    client.scripts.save("hello", source.replace("hello:", "hi:"))
    assert [v["version"] for v in client.scripts.versions("hello")] == [2, 1]
    assert client.scripts.restore("hello", 1)["version"] == 3
    assert client.functions.call("hello", query={"name": "x"}).json() == {"hello": "x"}
    run = client.scripts.test("hello", {"kind": "function", "request": {"query": {"name": "t"}}})
    conforms(run, types.TestRunResult)
    assert run["outcome"] == "ok"
    runs = wait_for("the run log", lambda: client.scripts.runs("hello"))
    conforms(runs[0], types.ScriptRun)
    assert [s["name"] for s in client.scripts.list()] == ["hello"]
    client.scripts.delete("hello")
    assert client.scripts.list() == []


def test_topics_triggers_keys_and_apps(
    client: picloud.Client, shared_server: PicloudServer
) -> None:
    topic = client.topics.create("a/b:c", auth_mode="public", retention={"max_events": 10})
    conforms(topic, types.Topic)
    assert client.topics.get("a/b:c")["retention"]["max_events"] == 10
    assert client.topics.set_external("a/b:c")["external_subscribable"] is True
    assert [t["name"] for t in client.topics.list()] == ["a/b:c"]

    trigger = client.triggers.create(
        {"kind": "topic", "topic": "a/b:c"},
        {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
        enabled=False,
        retry={"max_attempts": 2},
    )
    conforms(trigger, types.CreatedTrigger)
    updated = client.triggers.update(trigger["id"], ordered=True)
    conforms(updated, types.Trigger)
    assert (updated["ordered"], updated["enabled"]) == (True, False)
    assert [t["id"] for t in client.triggers.list()] == [trigger["id"]]
    client.triggers.delete(trigger["id"])

    created = client.keys.create("publisher", ["pubsub:publish"])
    conforms(created, types.CreatedKeyResponse)
    revoked = client.keys.revoke(created["id"])
    assert revoked["revoked_at"] is not None
    for key in client.keys.list():
        conforms(key, types.ApiKey)

    assert client.realtime.live_subscribers() == {"streams": 0, "topics": []}
    conforms(client.realtime.rotate_keys(grace_secs=60), types.RotatedKey)
    assert client.dead_letters.list() == []
    assert client.dead_letters.replay_all() == 0
    assert client.deliveries.list(state="dead") == []

    admin = picloud.Client(shared_server.url, api_key=shared_server.admin_key)
    assert client.app in [a["id"] for a in admin.apps.list()]
    conforms(admin.apps.get(client.app), types.App)
    assert admin.system.healthz() == {"status": "ok"}
    assert "paths" in admin.system.openapi()
    admin.close()
