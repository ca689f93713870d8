"""A realtime consumer for backends: docs/realtime-protocol.md, version 1.

``client.realtime.subscribe(topics, token_provider=..., cursor=...)`` returns an
iterator (an async iterator on :class:`~picloud.AsyncClient`) of :class:`Event` and
:class:`Reset` items. It behaves like ``@picloud/client``'s ``subscription.ts``:

* one SSE stream at a time, sent ``Last-Event-ID: <cursor>`` when it has one;
* the first frame must be ``hello`` of protocol 1 (else ``protocol_incompatible``);
* events are yielded per topic in seq order, never twice for one (topic, seq), even
  across reconnects; each carries the stream ``cursor`` after it, and so does
  ``subscription.cursor``: persist it after handling an event and pass it back as
  ``cursor=`` to resume where the worker stopped;
* a ``reset`` frame (the cursor could not be honoured; ``lost`` ranges are gone) is
  yielded as a :class:`Reset` item, in order, never hidden;
* ``token_expiring`` fetches a fresh token from ``token_provider`` and switches to a
  new stream from the cursor before the cut; ``token_expired`` and a 401 on a token
  that worked before fetch one and reconnect at once;
* silence for twice the heartbeat interval, a dropped connection, a 429 or a 5xx
  reconnect after a jittered exponential backoff (1 s doubling to 30 s, less up to 20 %),
  reset by each healthy ``hello``; the server's ``retry:`` sets the first delay;
* 400, 403, 404, 405, 410 (and 401 without a ``token_provider``) end the iteration by
  raising :class:`~picloud.PicloudError`; so does an incompatible server.

Failures that are retried are passed to ``on_error(error, will_retry)`` when given.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Union,
)

import httpx

from ._backoff import Backoff, BackoffPolicy
from ._sse import SseMessage, SseParser
from .cursor import CursorTracker
from .errors import PicloudError, error_from_response, transport_error

if TYPE_CHECKING:
    from ._transport import AsyncTransport, SyncTransport

__all__ = [
    "AsyncSubscription",
    "AsyncTokenProvider",
    "BackoffPolicy",
    "ErrorHandler",
    "Event",
    "LostRange",
    "Reset",
    "Subscription",
    "TokenProvider",
]

#: The protocol major version this client speaks.
PROTOCOL_VERSION = 1
#: Heartbeat assumed until a ``hello`` names one.
DEFAULT_HEARTBEAT_SECS = 30.0
#: A ``token_expiring`` this soon after ``hello`` means tokens live no longer than the
#: server's notice: a fresh one would be expiring at once too, so switching early would
#: only reconnect in a loop. Such a stream waits for ``token_expired`` instead.
MIN_AGE_FOR_EARLY_SWITCH = 1.0
#: Statuses that no retry can fix.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410})
#: Connecting and sending may take this long; reading has the heartbeat watchdog.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


@dataclass(frozen=True)
class Event:
    """An event received from a subscription."""

    #: The topic it was published to.
    topic: str
    #: Its position in the topic's log (gap-free, increasing).
    seq: int
    #: The event type (``message`` unless the publisher named one).
    type: str
    #: The published JSON value.
    data: Any
    #: Commit time, ms since the epoch.
    published_at: int
    #: The stream's resume cursor after this event (``topic:seq,...``, not an event
    #: id): persist it, and pass it as ``cursor=`` to continue from here.
    cursor: str


@dataclass(frozen=True)
class LostRange:
    """Events ``from_seq..=to_seq`` of ``topic`` that will never arrive."""

    topic: str
    from_seq: int
    to_seq: int


@dataclass(frozen=True)
class Reset:
    """The server could not resume from the cursor; the stream carries on from ``cursor``."""

    #: ``cursor_expired`` (events were pruned by retention) or ``cursor_invalid``.
    reason: str
    #: Where the stream continues from.
    cursor: str
    #: The events that will never arrive (empty for ``cursor_invalid``).
    lost: tuple[LostRange, ...] = field(default_factory=tuple)


Item = Union[Event, Reset]
#: What a token provider may return: the token, or a mapping holding it under
#: ``"token"`` (such as the answer of ``client.pubsub.subscriber_token``).
TokenResult = Union[str, Mapping[str, Any]]
TokenProvider = Callable[[], TokenResult]
AsyncTokenProvider = Callable[[], Union[TokenResult, Awaitable[TokenResult]]]
#: Called with each failure and whether the subscription will retry.
ErrorHandler = Callable[[PicloudError, bool], None]


# -- the protocol, without I/O ---------------------------------------------------------
def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _protocol_major(value: Any) -> int | None:
    if _is_int(value):
        return int(value)
    if isinstance(value, str):
        head = value.split(".", 1)[0]
        return int(head) if head.isdigit() else None
    return None


@dataclass(frozen=True)
class _Outcome:
    """What to do after a connection ended: ``retry`` (after a backoff), ``now``
    (a planned switch) or ``stop`` (raise ``error`` if any)."""

    next: str
    error: PicloudError | None = None


class _Connection:
    def __init__(self) -> None:
        self.parser = SseParser()
        self.hello_seen = False
        self.opened_at = 0.0
        self.token_expired = False
        self.switch = False
        self.fatal: PicloudError | None = None
        self.refresh = False


class _Core:
    """The state every connection of one subscription shares."""

    def __init__(
        self,
        app: str,
        topics: list[str],
        cursor: str | None,
        has_provider: bool,
        backoff: BackoffPolicy | None,
        on_error: ErrorHandler | None,
    ) -> None:
        if not topics:
            raise ValueError("subscribe to at least one topic")
        self.path = f"/v1/apps/{app}/realtime"
        self.topics = list(dict.fromkeys(topics))
        self.tracker = CursorTracker(self.topics, cursor)
        self.backoff = Backoff(backoff)
        self.heartbeat = DEFAULT_HEARTBEAT_SECS
        self.has_provider = has_provider
        self.on_error = on_error
        self.token: str | None = None
        self.token_stale = True
        self.token_tried = False

    def needs_token(self) -> bool:
        return self.has_provider and (self.token is None or self.token_stale)

    def set_token(self, result: Any) -> None:
        token = result if isinstance(result, str) else None
        if token is None and isinstance(result, Mapping):
            token = result.get("token")
        if token is None:
            token = getattr(result, "token", None)
        if not isinstance(token, str) or not token:
            raise ValueError("token_provider returned no token")
        self.token = token
        self.token_stale = False
        self.token_tried = False

    def request(
        self,
    ) -> tuple[dict[str, str], list[tuple[str, str | int | float | bool | None]], bool]:
        """Headers, query and whether the token is one never tried yet."""
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        cursor = self.tracker.cursor
        if cursor is not None:
            headers["last-event-id"] = cursor
        fresh = not self.token_tried
        self.token_tried = True
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("topic", topic) for topic in self.topics
        ]
        return headers, params, fresh

    def refused(self, error: PicloudError, token: str | None, fresh: bool) -> _Outcome:
        """What a non-2xx answer to the stream request means."""
        if error.status == 401 and self.has_provider:
            # A token that worked before has expired: fetch one and go again at once.
            # A token fresh from the provider that is refused: back off, then ask again.
            if token is not None and self.token == token:
                self.token_stale = True
            return _Outcome("retry", error) if fresh else _Outcome("now")
        if error.status in PERMANENT_STATUSES:
            return _Outcome("stop", error)
        return _Outcome("retry", error)

    def not_event_stream(self, response: httpx.Response) -> PicloudError | None:
        kind = response.headers.get("content-type", "")
        if kind.lower().startswith("text/event-stream"):
            return None
        return PicloudError(
            response.status_code, "invalid_response", f"expected text/event-stream, got {kind!r}"
        )

    def feed(self, connection: _Connection, chunk: bytes) -> list[Item]:
        """Parses a chunk; returns the items to hand over and flags the connection."""
        items: list[Item] = []
        for message in connection.parser.feed(chunk):
            if connection.switch or connection.fatal is not None:
                break
            if not connection.hello_seen:
                self._hello(connection, message)
                continue
            item = self._frame(connection, message)
            if item is not None:
                items.append(item)
        if connection.parser.retry_ms is not None:
            self.backoff.set_initial(connection.parser.retry_ms / 1000)
            connection.parser.retry_ms = None
        return items

    def _hello(self, connection: _Connection, message: SseMessage) -> None:
        hello = _json_object(message.data) if message.event == "hello" else None
        major = _protocol_major(hello.get("protocol")) if hello else None
        if hello is None or major != PROTOCOL_VERSION:
            found = f"protocol {hello.get('protocol')!r}" if hello else f"a {message.event!r} frame"
            connection.fatal = PicloudError(
                0,
                "protocol_incompatible",
                f"the server speaks {found} where this client expects protocol "
                f"{PROTOCOL_VERSION}: update the picloud package",
            )
            return
        connection.hello_seen = True
        connection.opened_at = time.monotonic()
        heartbeat = hello.get("heartbeat_secs")
        ok = isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool)
        self.heartbeat = (
            float(heartbeat) if ok and heartbeat and heartbeat > 0 else DEFAULT_HEARTBEAT_SECS
        )
        cursor = hello.get("cursor")
        if isinstance(cursor, str):
            self.tracker.adopt_start(cursor)
        self.backoff.reset()

    def _frame(self, connection: _Connection, message: SseMessage) -> Item | None:
        if message.event == "reset":
            return self._reset(message)
        if message.event == "token_expiring":
            age = time.monotonic() - connection.opened_at
            if self.has_provider and age >= MIN_AGE_FOR_EARLY_SWITCH:
                connection.refresh = True
            return None
        if message.event == "token_expired":
            connection.token_expired = True
            connection.switch = True
            return None
        if message.event == "hello":
            return None
        return self._event(message)

    def _reset(self, message: SseMessage) -> Reset | None:
        body = _json_object(message.data)
        if body is None:
            return None
        lost: list[LostRange] = []
        for entry in body.get("lost") or []:
            if not isinstance(entry, dict):
                continue
            topic, first, last = entry.get("topic"), entry.get("from_seq"), entry.get("to_seq")
            if isinstance(topic, str) and isinstance(first, int) and isinstance(last, int):
                lost.append(LostRange(topic, first, last))
        cursor = body.get("cursor")
        reset = Reset(
            reason=body["reason"] if isinstance(body.get("reason"), str) else "unknown",
            cursor=cursor if isinstance(cursor, str) else message.id,
            lost=tuple(lost),
        )
        self.tracker.apply_reset(reset.cursor, [(r.topic, r.to_seq) for r in reset.lost])
        return reset

    def _event(self, message: SseMessage) -> Event | None:
        body = _json_object(message.data)
        if body is None or not isinstance(body.get("topic"), str) or not _is_int(body.get("seq")):
            self.report(
                PicloudError(0, "invalid_response", f"unreadable {message.event!r} frame"), True
            )
            return None
        topic, seq = body["topic"], body["seq"]
        if not self.tracker.accept(topic, seq):
            return None
        published_at = body.get("published_at")
        return Event(
            topic=topic,
            seq=seq,
            type=body["type"] if isinstance(body.get("type"), str) else "message",
            data=body.get("data"),
            published_at=published_at if isinstance(published_at, int) else 0,
            cursor=self.tracker.cursor or message.id,
        )

    def after_read(self, connection: _Connection, token: str | None) -> _Outcome:
        """What a stream that ended (without an exception) means."""
        # A token refreshed after `token_expiring` is used as is; otherwise ask for one.
        if connection.token_expired and self.token == token:
            self.token_stale = True
        if connection.fatal is not None:
            return _Outcome("stop", connection.fatal)
        if connection.switch:
            return _Outcome("now")
        return _Outcome("retry", PicloudError(0, "stream_ended", "the server ended the stream"))

    def watchdog_error(self) -> PicloudError:
        return PicloudError(0, "heartbeat_timeout", "no data for twice the heartbeat interval")

    def report(self, error: PicloudError, will_retry: bool) -> None:
        if self.on_error is not None:
            self.on_error(error, will_retry)


def _token_error(cause: BaseException) -> PicloudError:
    if isinstance(cause, PicloudError):
        return cause
    error = PicloudError(0, "token_refresh_failed", f"token_provider failed: {cause}")
    error.__cause__ = cause
    return error


# -- synchronous driver ----------------------------------------------------------------
class _Watchdog:
    """Cuts a connection (shuts its socket down) after ``timeout`` seconds of silence;
    ``kick`` after every chunk. Also cuts it on demand, from any thread."""

    def __init__(self, response: httpx.Response, timeout: float) -> None:
        self._response = response
        self._deadline = time.monotonic() + timeout
        self._wake = threading.Condition()
        self._done = False
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="picloud-watchdog", daemon=True)
        self._thread.start()

    def kick(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._wake:
            sooner = deadline < self._deadline
            self._deadline = deadline
            if sooner:
                self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._done:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self.fired = True
                    break
                self._wake.wait(left)
        if self.fired:
            self.cut()

    def cut(self) -> None:
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            self._response.close()

    def stop(self) -> None:
        with self._wake:
            self._done = True
            self._wake.notify()


class Subscription:
    """A resumable realtime subscription: iterate it for :class:`Event` and
    :class:`Reset` items. ``cursor`` is where it is; ``close()`` (from any thread) or
    leaving ``with`` stops it."""

    def __init__(
        self,
        transport: SyncTransport,
        app: str,
        topics: list[str],
        *,
        token_provider: TokenProvider | None = None,
        cursor: str | None = None,
        on_error: ErrorHandler | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self._t = transport
        self._provider = token_provider
        self._core = _Core(app, topics, cursor, token_provider is not None, backoff, on_error)
        self._closed = threading.Event()
        self._watchdog: _Watchdog | None = None
        self._gen = self._run()

    @property
    def cursor(self) -> str | None:
        """The cursor after the last event handed over (or the stream's start)."""
        return self._core.tracker.cursor

    @property
    def topics(self) -> list[str]:
        return list(self._core.topics)

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        return next(self._gen)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the subscription; the iteration ends. Safe to call again."""
        self._closed.set()
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.cut()
        if inspect.getgeneratorstate(self._gen) != inspect.GEN_RUNNING:
            self._gen.close()

    def _refresh(self) -> None:
        assert self._provider is not None
        self._core.set_token(self._provider())

    def _run(self) -> Generator[Item, None, None]:
        core = self._core
        while not self._closed.is_set():
            outcome = yield from self._connect()
            if self._closed.is_set():
                return
            if outcome.next == "stop":
                if outcome.error is not None:
                    raise outcome.error
                return
            if outcome.next == "retry":
                assert outcome.error is not None
                core.report(outcome.error, True)
                self._closed.wait(core.backoff.next())

    def _connect(self) -> Generator[Item, None, _Outcome]:
        core = self._core
        if core.needs_token():
            try:
                self._refresh()
            except Exception as exc:
                return _Outcome("retry", _token_error(exc))
        headers, params, fresh = core.request()
        token = core.token
        try:
            with self._t.http.stream(
                "GET",
                self._t.base_url + core.path,
                params=params,
                headers=headers,
                timeout=STREAM_TIMEOUT,
            ) as response:
                if not response.is_success:
                    return core.refused(
                        error_from_response(response, response.read()), token, fresh
                    )
                wrong = core.not_event_stream(response)
                if wrong is not None:
                    return _Outcome("retry", wrong)
                return (yield from self._read(response, token))
        except httpx.TransportError as exc:
            if self._closed.is_set():
                return _Outcome("stop")
            return _Outcome("retry", transport_error(exc))

    def _read(self, response: httpx.Response, token: str | None) -> Generator[Item, None, _Outcome]:
        core = self._core
        connection = _Connection()
        watchdog = _Watchdog(response, core.heartbeat * 2)
        self._watchdog = watchdog
        try:
            for chunk in response.iter_raw():
                items = core.feed(connection, chunk)
                # After feeding: a `hello` in this chunk may have named the heartbeat.
                watchdog.kick(core.heartbeat * 2)
                yield from items
                if connection.refresh:
                    connection.refresh = False
                    try:
                        self._refresh()
                        connection.switch = True
                    except Exception as exc:
                        # Keep the stream until `token_expired`; the reconnect asks again.
                        core.report(_token_error(exc), True)
                if connection.switch or connection.fatal is not None or self._closed.is_set():
                    break
        except httpx.TransportError as exc:
            if self._closed.is_set():
                return _Outcome("stop")
            if watchdog.fired:
                return _Outcome("retry", core.watchdog_error())
            return _Outcome("retry", transport_error(exc))
        finally:
            watchdog.stop()
            self._watchdog = None
        if self._closed.is_set():
            return _Outcome("stop")
        if watchdog.fired:
            return _Outcome("retry", core.watchdog_error())
        return core.after_read(connection, token)


# -- asynchronous driver ---------------------------------------------------------------
class AsyncSubscription:
    """The asynchronous :class:`Subscription`: ``async for item in subscription``.
    ``token_provider`` may be a plain or an ``async`` function. Stop it with
    ``await subscription.aclose()`` or ``async with``."""

    def __init__(
        self,
        transport: AsyncTransport,
        app: str,
        topics: list[str],
        *,
        token_provider: AsyncTokenProvider | None = None,
        cursor: str | None = None,
        on_error: ErrorHandler | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self._t = transport
        self._provider = token_provider
        self._core = _Core(app, topics, cursor, token_provider is not None, backoff, on_error)
        self._closed = False
        self._gen = self._run()

    @property
    def cursor(self) -> str | None:
        """The cursor after the last event handed over (or the stream's start)."""
        return self._core.tracker.cursor

    @property
    def topics(self) -> list[str]:
        return list(self._core.topics)

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        return await self._gen.__anext__()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stops the subscription; the iteration ends. Safe to call again. (From another
        task, cancel the task iterating instead.)"""
        self._closed = True
        if not getattr(self._gen, "ag_running", False):
            await self._gen.aclose()

    async def _refresh(self) -> None:
        assert self._provider is not None
        result = self._provider()
        if inspect.isawaitable(result):
            result = await result
        self._core.set_token(result)

    async def _run(self) -> AsyncGenerator[Item, None]:
        core = self._core
        while not self._closed:
            outcome: _Outcome | None = None
            steps = self._connect()
            try:
                async for step in steps:
                    if isinstance(step, _Outcome):
                        outcome = step
                    else:
                        yield step
            finally:
                await steps.aclose()
            if self._closed or outcome is None:
                return
            if outcome.next == "stop":
                if outcome.error is not None:
                    raise outcome.error
                return
            if outcome.next == "retry":
                assert outcome.error is not None
                core.report(outcome.error, True)
                await asyncio.sleep(core.backoff.next())

    async def _connect(self) -> AsyncGenerator[Item | _Outcome, None]:
        # An async generator cannot `return` a value: the outcome is its last item.
        core = self._core
        if core.needs_token():
            try:
                await self._refresh()
            except Exception as exc:
                yield _Outcome("retry", _token_error(exc))
                return
        headers, params, fresh = core.request()
        token = core.token
        try:
            async with self._t.http.stream(
                "GET",
                self._t.base_url + core.path,
                params=params,
                headers=headers,
                timeout=STREAM_TIMEOUT,
            ) as response:
                if not response.is_success:
                    body = await response.aread()
                    yield core.refused(error_from_response(response, body), token, fresh)
                    return
                wrong = core.not_event_stream(response)
                if wrong is not None:
                    yield _Outcome("retry", wrong)
                    return
                steps = self._read(response, token)
                try:
                    async for step in steps:
                        yield step
                finally:
                    await steps.aclose()
        except httpx.TransportError as exc:
            yield _Outcome("stop") if self._closed else _Outcome("retry", transport_error(exc))

    async def _read(
        self, response: httpx.Response, token: str | None
    ) -> AsyncGenerator[Item | _Outcome, None]:
        core = self._core
        connection = _Connection()
        chunks = response.aiter_raw().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), core.heartbeat * 2)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                yield _Outcome("retry", core.watchdog_error())
                return
            for item in core.feed(connection, chunk):
                yield item
            if connection.refresh:
                connection.refresh = False
                try:
                    await self._refresh()
                    connection.switch = True
                except Exception as exc:
                    core.report(_token_error(exc), True)
            if connection.switch or connection.fatal is not None or self._closed:
                break
        yield core.after_read(connection, token)
