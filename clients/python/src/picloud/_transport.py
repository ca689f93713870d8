"""The HTTP layer: one pooled httpx client, auth, JSON, errors and retries.

Retry rules (connection errors, 429 and 5xx; jittered exponential backoff; a
``Retry-After`` is honoured):

* a request that surely never reached the server (connect failure, pool timeout) and a
  429 (the server refused it before doing anything) are retried whatever the method;
* any other failure (a dropped connection after the request was sent, a read timeout,
  a 5xx) is retried only for requests that are safe to repeat: GET, PUT, DELETE, the
  PATCHes that set a field, subscriber-token requests, and publishes, which always
  carry an ``Idempotency-Key`` (the SDK makes one when the caller gives none) so the
  server answers a repeat with the first answer instead of publishing twice.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import quote

import httpx

from ._backoff import Backoff, BackoffPolicy
from ._version import __version__
from .errors import PicloudError, error_from_response, transport_error

USER_AGENT = f"picloud-python/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

QueryValue = Union[str, int, float, bool, None]
TimeoutTypes = Union[float, httpx.Timeout, None]

#: Failures where the request cannot have reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How API requests are retried."""

    #: Retries after the first attempt (0 turns retrying off).
    max_retries: int = 3
    #: Delays between attempts.
    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(initial=0.5, maximum=8.0, jitter=0.5)
    )
    #: A ``Retry-After`` longer than this is not waited for: the error is raised.
    max_retry_after: float = 60.0


@dataclass
class Call:
    """One API request, before it is sent."""

    method: str
    path: str
    params: Mapping[str, QueryValue] | None = None
    json: Any = None
    has_json: bool = False
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    #: Safe to send again after an unknown outcome.
    idempotent: bool = False


def path(template: str, **values: str | int) -> str:
    """Fills ``{name}`` placeholders, each percent-encoded as one path segment."""
    for name, value in values.items():
        if isinstance(value, str) and value == "":
            raise ValueError(f"{name} must not be empty")
        template = template.replace("{" + name + "}", quote(str(value), safe=""))
    return template


def mask(secret: str | None) -> str | None:
    """A key as repr and logs may show it: its kind prefix only."""
    if secret is None:
        return None
    head = secret.split("_", 1)[0] + "_" if "_" in secret[:8] else ""
    return f"{head}***"


class _Base:
    def __init__(self, base_url: str, api_key: str | None, retry: RetryPolicy | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.retry = retry or RetryPolicy()
        #: The dashboard session's CSRF token, once signed in.
        self.csrf_token: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={mask(self._api_key)!r})"

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if self._api_key is not None:
            headers["authorization"] = f"Bearer {self._api_key}"
        if call.has_json:
            headers["content-type"] = "application/json"
        if self.csrf_token is not None and call.method in ("POST", "PUT", "PATCH", "DELETE"):
            headers["x-csrf-token"] = self.csrf_token
        if call.headers:
            headers.update(call.headers)
        return headers

    def body(self, call: Call) -> bytes | None:
        if call.has_json:
            return jsonlib.dumps(call.json, separators=(",", ":"), ensure_ascii=False).encode()
        return call.content

    def params(self, call: Call) -> dict[str, str] | None:
        if not call.params:
            return None
        out: dict[str, str] = {}
        for name, value in call.params.items():
            if value is None:
                continue
            out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def retry_delay(
        self, call: Call, attempt: int, backoff: Backoff, error: PicloudError
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.retry.max_retries:
            return None
        cause = error.__cause__
        if error.status == 0:
            retryable = call.idempotent or isinstance(cause, _NOT_SENT)
        elif error.status == 429:
            retryable = True
        else:
            retryable = error.status >= 500 and call.idempotent
        if not retryable:
            return None
        delay = backoff.next()
        if error.retry_after is not None:
            if error.retry_after > self.retry.max_retry_after:
                return None
            delay = max(delay, error.retry_after)
        return delay


def _client_headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"user-agent": USER_AGENT}
    if extra:
        headers.update(extra)
    return headers


class SyncTransport(_Base):
    """Sends requests with one pooled ``httpx.Client`` (connections are reused)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retry)
        self._owns_client = http_client is None
        self.http = http_client or httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=_client_headers(headers),
            transport=transport,
        )

    def close(self) -> None:
        if self._owns_client:
            self.http.close()

    def send(self, call: Call) -> httpx.Response:
        """Sends ``call`` (with retries) and returns the 2xx answer, read in full."""
        backoff = Backoff(self.retry.backoff)
        attempt = 0
        while True:
            try:
                response = self.http.request(
                    call.method,
                    self.base_url + call.path,
                    params=self.params(call),
                    content=self.body(call),
                    headers=self.headers(call),
                )
            except httpx.TransportError as exc:
                error = transport_error(exc)
            else:
                if response.is_success:
                    return response
                error = error_from_response(response)
            delay = self.retry_delay(call, attempt, backoff, error)
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def json(self, call: Call) -> Any:
        return decode_json(self.send(call))


class AsyncTransport(_Base):
    """Sends requests with one pooled ``httpx.AsyncClient`` (connections are reused)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retry)
        self._owns_client = http_client is None
        self.http = http_client or httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers=_client_headers(headers),
            transport=transport,
        )

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    async def send(self, call: Call) -> httpx.Response:
        """Sends ``call`` (with retries) and returns the 2xx answer, read in full."""
        backoff = Backoff(self.retry.backoff)
        attempt = 0
        while True:
            try:
                response = await self.http.request(
                    call.method,
                    self.base_url + call.path,
                    params=self.params(call),
                    content=self.body(call),
                    headers=self.headers(call),
                )
            except httpx.TransportError as exc:
                error = transport_error(exc)
            else:
                if response.is_success:
                    return response
                error = error_from_response(response)
            delay = self.retry_delay(call, attempt, backoff, error)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def json(self, call: Call) -> Any:
        return decode_json(await self.send(call))


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (None for an empty one)."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError as exc:
        error = PicloudError(
            response.status_code,
            "invalid_response",
            "the response is not JSON",
            request_id=response.headers.get("x-request-id"),
        )
        raise error from exc
