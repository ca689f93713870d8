"""The one exception type the SDK raises, and its subclasses by HTTP status.

Every failure is a :class:`PicloudError`: ``code`` is the API's machine-readable code
(``topic_not_found``, ``rate_limited``, ... the ``ErrorCode`` enum of the OpenAPI
document) or one the SDK produces itself (``network_error``, ``timeout``,
``invalid_response``, ``protocol_incompatible``, ``heartbeat_timeout``,
``stream_ended``, ``token_refresh_failed``, ``webhook_*``). Match on ``code``, never on
``message``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "PicloudError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
]


class PicloudError(Exception):
    """An API error answer, or a failure before one arrived (``status`` 0)."""

    #: The HTTP status, or 0 when no HTTP answer applies.
    status: int
    #: A stable machine-readable code.
    code: str
    #: A human-readable explanation.
    message: str
    #: The server's ``x-request-id``, when it sent one.
    request_id: str | None
    #: Seconds from the ``Retry-After`` header, when the server sent one.
    retry_after: float | None
    #: Where in a submitted script source (``script_compile_error`` only).
    line: int | None
    column: int | None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line is not None else ""
        status = f"HTTP {self.status} " if self.status else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{status}{self.code}: {self.message}{where}{request}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class InvalidRequestError(PicloudError):
    """400, 413, 415, 431: the request was refused as it stands."""


class AuthenticationError(PicloudError):
    """401: no credentials, or ones that are unknown, revoked or expired."""


class PermissionDeniedError(PicloudError):
    """403: the key lacks the scope the route needs."""


class NotFoundError(PicloudError):
    """404: the app, topic, trigger, ... (or the route) does not exist."""


class ConflictError(PicloudError):
    """409: it already exists."""


class RateLimitedError(PicloudError):
    """429: too many requests or streams; see ``retry_after``."""


class ServerError(PicloudError):
    """5xx (and 408): the server failed or is unavailable; retrying may help."""


class TransportError(PicloudError):
    """No usable HTTP answer: the connection failed, timed out or broke (status 0)."""


_BY_STATUS: dict[int, type[PicloudError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: InvalidRequestError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    429: RateLimitedError,
    431: InvalidRequestError,
}


def error_class(status: int) -> type[PicloudError]:
    """The subclass for an HTTP status."""
    if status == 0:
        return TransportError
    if status == 408 or status >= 500:
        return ServerError
    return _BY_STATUS.get(status, PicloudError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    from time import time

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time())


def error_from_response(response: httpx.Response, body: bytes | None = None) -> PicloudError:
    """The error for a non-2xx answer, from its ``{"error": {"code", "message"}}`` body."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    raw = response.content if body is None else body
    cls = error_class(status)
    detail: Any = None
    try:
        detail = json.loads(raw.decode("utf-8")).get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        detail = None
    if isinstance(detail, dict) and isinstance(detail.get("code"), str):
        message = detail.get("message")
        line, column = detail.get("line"), detail.get("column")
        return cls(
            status,
            detail["code"],
            message if isinstance(message, str) else detail["code"],
            request_id=request_id,
            retry_after=retry_after,
            line=line if isinstance(line, int) else None,
            column=column if isinstance(column, int) else None,
        )
    text = raw[:200].decode("utf-8", "replace")
    return cls(
        status,
        f"http_{status}",
        f"HTTP {status}" + (f": {text}" if text else ""),
        request_id=request_id,
        retry_after=retry_after,
    )


def transport_error(cause: BaseException) -> PicloudError:
    """Wraps an httpx failure that produced no answer."""
    code = "timeout" if isinstance(cause, httpx.TimeoutException) else "network_error"
    detail = str(cause) or type(cause).__name__
    error = TransportError(0, code, f"{code.replace('_', ' ')}: {detail}")
    error.__cause__ = cause
    return error
