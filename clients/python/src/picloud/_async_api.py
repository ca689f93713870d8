"""The asynchronous client and its namespaces: one method per route of the API.

``_sync_api.py`` is generated from this file by ``scripts/generate.py`` (drop ``async``
and ``await``), so edit here and regenerate.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

import httpx

from ._transport import (
    DEFAULT_TIMEOUT,
    AsyncTransport,
    Call,
    QueryValue,
    RetryPolicy,
    TimeoutTypes,
    mask,
    path,
)
from .functions import FunctionResponse
from .realtime import AsyncSubscription, AsyncTokenProvider, BackoffPolicy, ErrorHandler
from .types import (
    ApiKey,
    App,
    AuthMode,
    BatchEvent,
    CreatedKeyResponse,
    CreatedTrigger,
    DeadLetter,
    DeadLetterDetail,
    Delivery,
    DeliveryDetail,
    EventPage,
    FunctionAccess,
    Handler,
    LiveSubscribers,
    LoggedEvent,
    Pacing,
    PublishedEvent,
    Retention,
    RetryPolicyRequest,
    RotatedKey,
    RotatedSecret,
    Scope,
    Script,
    ScriptRun,
    ScriptSummary,
    ScriptVersion,
    SessionInfo,
    Source,
    SourceKind,
    StatsSeries,
    Status,
    TestRun,
    TestRunResult,
    TokenResponse,
    Topic,
    Trigger,
    TriggerSource,
)

JsonBody = Any

_UNSET: Any = object()


def _call(
    method: str,
    template: str,
    *,
    params: Mapping[str, QueryValue] | None = None,
    json: Any = _UNSET,
    headers: Mapping[str, str] | None = None,
    idempotent: bool | None = None,
    **values: str | int,
) -> Call:
    return Call(
        method=method,
        path=path(template, **values),
        params=params,
        json=None if json is _UNSET else json,
        has_json=json is not _UNSET,
        headers=headers,
        idempotent=method in ("GET", "PUT", "DELETE") if idempotent is None else idempotent,
    )


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _seconds(value: int | float | timedelta | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return int(value)


def new_idempotency_key() -> str:
    """A fresh key for one publish: retries of that publish reuse it."""
    return f"py_{uuid.uuid4().hex}"


class _Namespace:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._t = client._transport

    def _app(self) -> str:
        return self._client._require_app()


class AsyncSystem(_Namespace):
    """Health, readiness, metrics and the API document (no key needed)."""

    async def healthz(self) -> Status:
        """``GET /healthz``: the process is up."""
        return cast(Status, await self._t.json(_call("GET", "/healthz")))

    async def readyz(self) -> Status:
        """``GET /readyz``: the database answers (else :class:`ServerError` 503)."""
        return cast(Status, await self._t.json(_call("GET", "/readyz")))

    async def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return (await self._t.send(_call("GET", "/metrics"))).text

    async def openapi(self) -> dict[str, Any]:
        """``GET /openapi.json``: the OpenAPI document the server serves."""
        return cast("dict[str, Any]", await self._t.json(_call("GET", "/openapi.json")))


class AsyncAdmin(_Namespace):
    """The dashboard's session routes (a signed-in admin, not an API key)."""

    async def sign_in(self, email: str, password: str) -> SessionInfo:
        """``POST /v1/admin/session``: signs in; the client keeps the session cookie and
        sends the CSRF token with later state-changing requests."""
        call = _call("POST", "/v1/admin/session", json={"email": email, "password": password})
        info = cast(SessionInfo, await self._t.json(call))
        self._t.csrf_token = info["csrf_token"]
        return info

    async def session(self) -> SessionInfo:
        """``GET /v1/admin/session``: who is signed in."""
        return cast(SessionInfo, await self._t.json(_call("GET", "/v1/admin/session")))

    async def sign_out(self) -> None:
        """``DELETE /v1/admin/session``: ends the session."""
        await self._t.send(_call("DELETE", "/v1/admin/session"))
        self._t.csrf_token = None

    async def stats(self, app: str | None = None) -> StatsSeries:
        """``GET /v1/admin/stats``: the overview's samples, for one app or the instance."""
        call = _call("GET", "/v1/admin/stats", params={"app": app})
        return cast(StatsSeries, await self._t.json(call))


class AsyncApps(_Namespace):
    """Apps (``instance:admin``; ``get`` also with ``app:read``)."""

    async def list(self) -> builtins.list[App]:
        """``GET /v1/apps``."""
        return cast(builtins.list[App], (await self._t.json(_call("GET", "/v1/apps")))["apps"])

    async def create(self, id: str, name: str | None = None) -> App:
        """``POST /v1/apps``: ``id`` is the slug used in every URL."""
        call = _call("POST", "/v1/apps", json=_drop_none(id=id, name=name))
        return cast(App, await self._t.json(call))

    async def get(self, app: str | None = None) -> App:
        """``GET /v1/apps/{app}`` (the client's app by default)."""
        call = _call("GET", "/v1/apps/{app}", app=app or self._app())
        return cast(App, await self._t.json(call))

    async def delete(self, app: str) -> None:
        """``DELETE /v1/apps/{app}``: the app and everything in it."""
        await self._t.send(_call("DELETE", "/v1/apps/{app}", app=app))


class AsyncTopics(_Namespace):
    """Topics of the client's app."""

    async def list(self) -> builtins.list[Topic]:
        """``GET /v1/apps/{app}/topics``."""
        call = _call("GET", "/v1/apps/{app}/topics", app=self._app())
        return cast(builtins.list[Topic], (await self._t.json(call))["topics"])

    async def create(
        self,
        name: str,
        *,
        auth_mode: AuthMode | None = None,
        retention: Retention | None = None,
    ) -> Topic:
        """``POST /v1/apps/{app}/topics``: registers a topic (publishing also does)."""
        body = _drop_none(name=name, auth_mode=auth_mode, retention=retention)
        call = _call("POST", "/v1/apps/{app}/topics", json=body, app=self._app())
        return cast(Topic, await self._t.json(call))

    async def get(self, name: str) -> Topic:
        """``GET /v1/apps/{app}/topics/{topic}``."""
        call = _call("GET", "/v1/apps/{app}/topics/{topic}", app=self._app(), topic=name)
        return cast(Topic, await self._t.json(call))

    async def delete(self, name: str) -> None:
        """``DELETE /v1/apps/{app}/topics/{topic}``: the topic and its log."""
        await self._t.send(
            _call("DELETE", "/v1/apps/{app}/topics/{topic}", app=self._app(), topic=name)
        )

    async def set_external(self, name: str, external: bool = True) -> Topic:
        """``PATCH /v1/apps/{app}/topics/{topic}/external``: lets browsers subscribe."""
        call = _call(
            "PATCH",
            "/v1/apps/{app}/topics/{topic}/external",
            json={"external_subscribable": external},
            idempotent=True,
            app=self._app(),
            topic=name,
        )
        return cast(Topic, await self._t.json(call))


class AsyncEvents(_Namespace):
    """Reading a topic's log."""

    async def read(
        self, topic: str, *, after: int | None = None, limit: int | None = None
    ) -> EventPage:
        """``GET /v1/apps/{app}/topics/{topic}/events``: events with seq > ``after``."""
        call = _call(
            "GET",
            "/v1/apps/{app}/topics/{topic}/events",
            params={"after": after, "limit": limit},
            app=self._app(),
            topic=topic,
        )
        return cast(EventPage, await self._t.json(call))

    async def iter(
        self, topic: str, *, after: int = 0, page_size: int | None = None
    ) -> AsyncIterator[LoggedEvent]:
        """Every retained event with seq > ``after``, page by page, in seq order."""
        while True:
            page = await self.read(topic, after=after, limit=page_size)
            if not page["events"]:
                return
            for event in page["events"]:
                yield event
                after = event["seq"]


class AsyncPubSub(_Namespace):
    """Publishing and subscriber tokens."""

    async def publish(
        self,
        topic: str,
        type: str | None = None,
        *,
        data: JsonBody,
        idempotency_key: str | None = None,
    ) -> PublishedEvent:
        """``POST /v1/apps/{app}/topics/{topic}/events``: durable when this returns.

        Always sent with an ``Idempotency-Key`` (a fresh one when none is given), so
        that a retry after a lost answer returns the first answer, never a second event.
        """
        key = idempotency_key or new_idempotency_key()
        call = _call(
            "POST",
            "/v1/apps/{app}/topics/{topic}/events",
            json=_drop_none(type=type) | {"data": data},
            headers={"idempotency-key": key},
            idempotent=True,
            app=self._app(),
            topic=topic,
        )
        return cast(PublishedEvent, await self._t.json(call))

    async def publish_batch(
        self, events: Sequence[BatchEvent], *, idempotency_key: str | None = None
    ) -> builtins.list[PublishedEvent]:
        """``POST /v1/apps/{app}/events``: all events commit together, or none does."""
        key = idempotency_key or new_idempotency_key()
        call = _call(
            "POST",
            "/v1/apps/{app}/events",
            json={"events": list(events)},
            headers={"idempotency-key": key},
            idempotent=True,
            app=self._app(),
        )
        return cast(builtins.list[PublishedEvent], (await self._t.json(call))["events"])

    async def subscriber_token(
        self,
        topics: Sequence[str],
        ttl: int | float | timedelta | None = None,
        sub: str | None = None,
    ) -> TokenResponse:
        """``POST /v1/apps/{app}/subscriber-tokens``: a token for a browser (or a
        realtime consumer) to subscribe to ``topics``; ``ttl`` in seconds."""
        body = _drop_none(topics=list(topics), ttl_secs=_seconds(ttl), sub=sub)
        call = _call(
            "POST", "/v1/apps/{app}/subscriber-tokens", json=body, idempotent=True, app=self._app()
        )
        return cast(TokenResponse, await self._t.json(call))


class AsyncTriggers(_Namespace):
    """Triggers: webhooks and script handlers fired by topics, dead letters or cron."""

    async def list(self) -> builtins.list[Trigger]:
        """``GET /v1/apps/{app}/triggers``."""
        call = _call("GET", "/v1/apps/{app}/triggers", app=self._app())
        return cast(builtins.list[Trigger], (await self._t.json(call))["triggers"])

    async def create(
        self,
        source: TriggerSource,
        handler: Handler,
        *,
        enabled: bool | None = None,
        ordered: bool | None = None,
        pacing: Pacing | None = None,
        retry: RetryPolicyRequest | None = None,
    ) -> CreatedTrigger:
        """``POST /v1/apps/{app}/triggers``: the answer holds the signing ``secret``."""
        body = _drop_none(
            source=source,
            handler=handler,
            enabled=enabled,
            ordered=ordered,
            pacing=pacing,
            retry=retry,
        )
        call = _call("POST", "/v1/apps/{app}/triggers", json=body, app=self._app())
        return cast(CreatedTrigger, await self._t.json(call))

    async def get(self, trigger_id: str) -> Trigger:
        """``GET /v1/apps/{app}/triggers/{trigger_id}``."""
        call = _call(
            "GET", "/v1/apps/{app}/triggers/{trigger_id}", app=self._app(), trigger_id=trigger_id
        )
        return cast(Trigger, await self._t.json(call))

    async def update(
        self,
        trigger_id: str,
        *,
        enabled: bool | None = None,
        handler: Handler | None = None,
        ordered: bool | None = None,
        pacing: Pacing | None = None,
        retry: RetryPolicyRequest | None = None,
        source: TriggerSource | None = None,
    ) -> Trigger:
        """``PATCH /v1/apps/{app}/triggers/{trigger_id}``: changes the given fields."""
        body = _drop_none(
            enabled=enabled,
            handler=handler,
            ordered=ordered,
            pacing=pacing,
            retry=retry,
            source=source,
        )
        call = _call(
            "PATCH",
            "/v1/apps/{app}/triggers/{trigger_id}",
            json=body,
            idempotent=True,
            app=self._app(),
            trigger_id=trigger_id,
        )
        return cast(Trigger, await self._t.json(call))

    async def delete(self, trigger_id: str) -> None:
        """``DELETE /v1/apps/{app}/triggers/{trigger_id}``."""
        await self._t.send(
            _call(
                "DELETE",
                "/v1/apps/{app}/triggers/{trigger_id}",
                app=self._app(),
                trigger_id=trigger_id,
            )
        )

    async def get_secret(self, trigger_id: str) -> str:
        """``GET /v1/apps/{app}/triggers/{trigger_id}/secret``: the ``whsec_`` secret
        to verify its webhooks with (:func:`picloud.webhooks.verify`)."""
        call = _call(
            "GET",
            "/v1/apps/{app}/triggers/{trigger_id}/secret",
            app=self._app(),
            trigger_id=trigger_id,
        )
        return cast(str, (await self._t.json(call))["secret"])

    async def rotate_secret(self, trigger_id: str) -> RotatedSecret:
        """``POST /v1/apps/{app}/triggers/{trigger_id}/secret/rotate``: deliveries are
        signed with both secrets until ``previous_secret_expires_at``."""
        call = _call(
            "POST",
            "/v1/apps/{app}/triggers/{trigger_id}/secret/rotate",
            app=self._app(),
            trigger_id=trigger_id,
        )
        return cast(RotatedSecret, await self._t.json(call))


class AsyncDeliveries(_Namespace):
    """Deliveries: an event on its way to one trigger."""

    async def list(
        self,
        *,
        state: str | None = None,
        trigger: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> builtins.list[Delivery]:
        """``GET /v1/apps/{app}/deliveries``: newest first; page with ``before``."""
        params = {"state": state, "trigger": trigger, "before": before, "limit": limit}
        call = _call("GET", "/v1/apps/{app}/deliveries", params=params, app=self._app())
        return cast(builtins.list[Delivery], (await self._t.json(call))["deliveries"])

    async def get(self, delivery_id: int) -> DeliveryDetail:
        """``GET /v1/apps/{app}/deliveries/{delivery_id}``: with its attempts."""
        call = _call(
            "GET",
            "/v1/apps/{app}/deliveries/{delivery_id}",
            app=self._app(),
            delivery_id=delivery_id,
        )
        return cast(DeliveryDetail, await self._t.json(call))

    async def retry(self, delivery_id: int) -> Delivery:
        """``POST /v1/apps/{app}/deliveries/{delivery_id}/retry``: try again now."""
        call = _call(
            "POST",
            "/v1/apps/{app}/deliveries/{delivery_id}/retry",
            app=self._app(),
            delivery_id=delivery_id,
        )
        return cast(Delivery, await self._t.json(call))


class AsyncDeadLetters(_Namespace):
    """Dead letters: deliveries (and outbox rows) that ran out of attempts."""

    async def list(
        self, *, trigger: str | None = None, before: int | None = None, limit: int | None = None
    ) -> builtins.list[DeadLetter]:
        """``GET /v1/apps/{app}/dead-letters``: newest first; page with ``before``."""
        params = {"trigger": trigger, "before": before, "limit": limit}
        call = _call("GET", "/v1/apps/{app}/dead-letters", params=params, app=self._app())
        return cast(builtins.list[DeadLetter], (await self._t.json(call))["dead_letters"])

    async def get(self, dead_letter_id: int) -> DeadLetterDetail:
        """``GET /v1/apps/{app}/dead-letters/{dead_letter_id}``: with its event."""
        call = _call(
            "GET",
            "/v1/apps/{app}/dead-letters/{dead_letter_id}",
            app=self._app(),
            dead_letter_id=dead_letter_id,
        )
        return cast(DeadLetterDetail, await self._t.json(call))

    async def replay(self, dead_letter_id: int) -> int:
        """``POST /v1/apps/{app}/dead-letters/{dead_letter_id}/replay``: how many."""
        call = _call(
            "POST",
            "/v1/apps/{app}/dead-letters/{dead_letter_id}/replay",
            app=self._app(),
            dead_letter_id=dead_letter_id,
        )
        return cast(int, (await self._t.json(call))["count"])

    async def replay_all(
        self, *, ids: Sequence[int] | None = None, per_second: int | None = None
    ) -> int:
        """``POST /v1/apps/{app}/dead-letters/replay``: ``ids``, or every dead letter
        not replayed yet, paced at ``per_second``; returns how many."""
        body = _drop_none(ids=None if ids is None else list(ids), per_second=per_second)
        call = _call("POST", "/v1/apps/{app}/dead-letters/replay", json=body, app=self._app())
        return cast(int, (await self._t.json(call))["count"])

    async def purge(self, dead_letter_id: int) -> None:
        """``DELETE /v1/apps/{app}/dead-letters/{dead_letter_id}``."""
        await self._t.send(
            _call(
                "DELETE",
                "/v1/apps/{app}/dead-letters/{dead_letter_id}",
                app=self._app(),
                dead_letter_id=dead_letter_id,
            )
        )

    async def purge_all(self) -> int:
        """``DELETE /v1/apps/{app}/dead-letters``: returns how many."""
        call = _call("DELETE", "/v1/apps/{app}/dead-letters", app=self._app())
        return cast(int, (await self._t.json(call))["count"])


class AsyncKeys(_Namespace):
    """API keys of the client's app (``app:admin``)."""

    async def list(self) -> builtins.list[ApiKey]:
        """``GET /v1/apps/{app}/keys``: revoked ones included, never secrets."""
        call = _call("GET", "/v1/apps/{app}/keys", app=self._app())
        return cast(builtins.list[ApiKey], (await self._t.json(call))["keys"])

    async def create(self, name: str, scopes: Sequence[Scope]) -> CreatedKeyResponse:
        """``POST /v1/apps/{app}/keys``: ``key`` in the answer is the only copy."""
        body = {"name": name, "scopes": list(scopes)}
        call = _call("POST", "/v1/apps/{app}/keys", json=body, app=self._app())
        return cast(CreatedKeyResponse, await self._t.json(call))

    async def revoke(self, key_id: str) -> ApiKey:
        """``DELETE /v1/apps/{app}/keys/{key_id}``."""
        call = _call("DELETE", "/v1/apps/{app}/keys/{key_id}", app=self._app(), key_id=key_id)
        return cast(ApiKey, await self._t.json(call))


class AsyncInstanceKeys(_Namespace):
    """Instance admin keys (``instance:admin``)."""

    async def list(self) -> builtins.list[ApiKey]:
        """``GET /v1/keys``."""
        return cast(builtins.list[ApiKey], (await self._t.json(_call("GET", "/v1/keys")))["keys"])

    async def create(self, name: str) -> CreatedKeyResponse:
        """``POST /v1/keys``: a new ``instance:admin`` key."""
        call = _call("POST", "/v1/keys", json={"name": name})
        return cast(CreatedKeyResponse, await self._t.json(call))

    async def revoke(self, key_id: str) -> ApiKey:
        """``DELETE /v1/keys/{key_id}``."""
        call = _call("DELETE", "/v1/keys/{key_id}", key_id=key_id)
        return cast(ApiKey, await self._t.json(call))


class AsyncFunctions(_Namespace):
    """Scripts called as HTTP functions."""

    async def call(
        self,
        script: str,
        body: bytes | str | None = None,
        *,
        json: Any = _UNSET,
        method: str = "POST",
        query: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FunctionResponse:
        """``POST`` (or ``GET``) ``/v1/apps/{app}/functions/{script}``: the script's
        answer; a non-2xx one raises :class:`PicloudError`. Not retried once sent."""
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError("functions are called with GET or POST")
        if json is not _UNSET:
            call = _call(
                method,
                "/v1/apps/{app}/functions/{script}",
                json=json,
                params=query,
                headers=headers,
                idempotent=False,
                app=self._app(),
                script=script,
            )
        else:
            call = _call(
                method,
                "/v1/apps/{app}/functions/{script}",
                params=query,
                headers=headers,
                idempotent=False,
                app=self._app(),
                script=script,
            )
            call.content = body.encode() if isinstance(body, str) else body
        response = await self._t.send(call)
        return FunctionResponse(response.status_code, response.headers, response.content)


class AsyncRealtime(_Namespace):
    """Realtime streams: consume them, rotate their signing keys, count listeners."""

    def subscribe(
        self,
        topics: str | Sequence[str],
        token_provider: AsyncTokenProvider | None = None,
        cursor: str | None = None,
        *,
        on_error: ErrorHandler | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> AsyncSubscription:
        """``GET /v1/apps/{app}/realtime``: an iterator of events (and resets) that
        reconnects by itself from its cursor; see :class:`AsyncSubscription`."""
        return AsyncSubscription(
            self._t,
            self._app(),
            [topics] if isinstance(topics, str) else list(topics),
            token_provider=token_provider,
            cursor=cursor,
            on_error=on_error,
            backoff=backoff,
        )

    async def rotate_keys(self, grace_secs: int | None = None) -> RotatedKey:
        """``POST /v1/apps/{app}/realtime/keys/rotate``: new tokens use a new key."""
        call = _call(
            "POST",
            "/v1/apps/{app}/realtime/keys/rotate",
            params={"grace_secs": grace_secs},
            app=self._app(),
        )
        return cast(RotatedKey, await self._t.json(call))

    async def live_subscribers(self) -> LiveSubscribers:
        """``GET /v1/apps/{app}/realtime/subscribers``: open streams on this node."""
        call = _call("GET", "/v1/apps/{app}/realtime/subscribers", app=self._app())
        return cast(LiveSubscribers, await self._t.json(call))


class AsyncScripts(_Namespace):
    """Scripts (``scripts:manage``)."""

    async def list(self) -> builtins.list[ScriptSummary]:
        """``GET /v1/apps/{app}/scripts``."""
        call = _call("GET", "/v1/apps/{app}/scripts", app=self._app())
        return cast(builtins.list[ScriptSummary], (await self._t.json(call))["scripts"])

    async def get(self, name: str) -> Script:
        """``GET /v1/apps/{app}/scripts/{script}``: with its current source."""
        call = _call("GET", "/v1/apps/{app}/scripts/{script}", app=self._app(), script=name)
        return cast(Script, await self._t.json(call))

    async def save(self, name: str, source: str, *, access: FunctionAccess | None = None) -> Script:
        """``PUT /v1/apps/{app}/scripts/{script}``: compiles, then stores a new version
        (``script_compile_error`` with ``line``/``column`` when it does not compile)."""
        call = _call(
            "PUT",
            "/v1/apps/{app}/scripts/{script}",
            json=_drop_none(source=source, access=access),
            idempotent=False,
            app=self._app(),
            script=name,
        )
        return cast(Script, await self._t.json(call))

    async def delete(self, name: str) -> None:
        """``DELETE /v1/apps/{app}/scripts/{script}``: with all its versions."""
        await self._t.send(
            _call("DELETE", "/v1/apps/{app}/scripts/{script}", app=self._app(), script=name)
        )

    async def runs(
        self, name: str, *, before: int | None = None, limit: int | None = None
    ) -> builtins.list[ScriptRun]:
        """``GET /v1/apps/{app}/scripts/{script}/runs``: newest first."""
        call = _call(
            "GET",
            "/v1/apps/{app}/scripts/{script}/runs",
            params={"before": before, "limit": limit},
            app=self._app(),
            script=name,
        )
        return cast(builtins.list[ScriptRun], (await self._t.json(call))["runs"])

    async def test(self, name: str, run: TestRun) -> TestRunResult:
        """``POST /v1/apps/{app}/scripts/{script}/test``: runs it without saving."""
        call = _call(
            "POST",
            "/v1/apps/{app}/scripts/{script}/test",
            json=run,
            app=self._app(),
            script=name,
        )
        return cast(TestRunResult, await self._t.json(call))

    async def versions(self, name: str) -> builtins.list[ScriptVersion]:
        """``GET /v1/apps/{app}/scripts/{script}/versions``: newest first."""
        call = _call(
            "GET", "/v1/apps/{app}/scripts/{script}/versions", app=self._app(), script=name
        )
        return cast(builtins.list[ScriptVersion], (await self._t.json(call))["versions"])

    async def restore(self, name: str, version: int) -> Script:
        """``POST /v1/apps/{app}/scripts/{script}/versions/{version}/restore``."""
        call = _call(
            "POST",
            "/v1/apps/{app}/scripts/{script}/versions/{version}/restore",
            app=self._app(),
            script=name,
            version=version,
        )
        return cast(Script, await self._t.json(call))


class AsyncSources(_Namespace):
    """Outbox sources: app databases PiCloud relays events from (``app:admin``)."""

    async def list(self) -> builtins.list[Source]:
        """``GET /v1/apps/{app}/sources``."""
        call = _call("GET", "/v1/apps/{app}/sources", app=self._app())
        return cast(builtins.list[Source], (await self._t.json(call))["sources"])

    async def create(
        self,
        database_url: str,
        *,
        kind: SourceKind = "postgres_outbox",
        schema: str | None = None,
    ) -> Source:
        """``POST /v1/apps/{app}/sources``: after ``picloud sources install``."""
        body = _drop_none(kind=kind, database_url=database_url, schema=schema)
        call = _call("POST", "/v1/apps/{app}/sources", json=body, app=self._app())
        return cast(Source, await self._t.json(call))

    async def get(self, source_id: str) -> Source:
        """``GET /v1/apps/{app}/sources/{source_id}``: with the relay's status."""
        call = _call(
            "GET", "/v1/apps/{app}/sources/{source_id}", app=self._app(), source_id=source_id
        )
        return cast(Source, await self._t.json(call))

    async def update(self, source_id: str, *, enabled: bool) -> Source:
        """``PATCH /v1/apps/{app}/sources/{source_id}``: stop or start its relay."""
        call = _call(
            "PATCH",
            "/v1/apps/{app}/sources/{source_id}",
            json={"enabled": enabled},
            idempotent=True,
            app=self._app(),
            source_id=source_id,
        )
        return cast(Source, await self._t.json(call))

    async def delete(self, source_id: str) -> None:
        """``DELETE /v1/apps/{app}/sources/{source_id}``."""
        await self._t.send(
            _call(
                "DELETE", "/v1/apps/{app}/sources/{source_id}", app=self._app(), source_id=source_id
            )
        )


class AsyncClient:
    """A PiCloud API client (asynchronous), bound to one app.

    ``AsyncClient("http://127.0.0.1:8080", api_key="pk_...", app="shop")``. One pooled
    HTTP client serves every request; close it with ``await client.aclose()`` or
    ``async with``. The API key never appears in ``repr``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        app: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        _shared: AsyncTransport | None = None,
    ) -> None:
        self.app = app
        self._transport = _shared or AsyncTransport(
            base_url,
            api_key,
            timeout=timeout,
            retry=retry,
            headers=headers,
            http_client=http_client,
            transport=transport,
        )
        self._owns_transport = _shared is None
        self.system = AsyncSystem(self)
        self.admin = AsyncAdmin(self)
        self.apps = AsyncApps(self)
        self.topics = AsyncTopics(self)
        self.events = AsyncEvents(self)
        self.pubsub = AsyncPubSub(self)
        self.triggers = AsyncTriggers(self)
        self.deliveries = AsyncDeliveries(self)
        self.dead_letters = AsyncDeadLetters(self)
        self.keys = AsyncKeys(self)
        self.instance_keys = AsyncInstanceKeys(self)
        self.functions = AsyncFunctions(self)
        self.realtime = AsyncRealtime(self)
        self.scripts = AsyncScripts(self)
        self.sources = AsyncSources(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._transport.base_url!r}, app={self.app!r}, "
            f"api_key={mask(self._transport._api_key)!r})"
        )

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def for_app(self, app: str) -> AsyncClient:
        """The same connection pool and key, bound to another app."""
        return type(self)(self._transport.base_url, app=app, _shared=self._transport)

    def _require_app(self) -> str:
        if not self.app:
            raise ValueError("this route is under /v1/apps/{app}: create the client with app=...")
        return self.app

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: Any = _UNSET,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Any route by hand (``path`` as sent, e.g. ``/v1/apps/shop/topics``): the 2xx
        answer, else :class:`PicloudError`. Retried only when it surely was not sent."""
        call = Call(
            method=method.upper(),
            path=path,
            params=params,
            json=None if json is _UNSET else json,
            has_json=json is not _UNSET,
            content=content.encode() if isinstance(content, str) else content,
            headers=headers,
        )
        return await self._transport.send(call)

    async def aclose(self) -> None:
        """Closes the connection pool (unless it was given or shared)."""
        if self._owns_transport:
            await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
