"""Verifying webhook deliveries: Standard Webhooks (https://www.standardwebhooks.com).

PiCloud signs every webhook with its trigger's secret (``whsec_`` and the base64 of the
key, from ``client.triggers.get_secret(trigger_id)``)::

    webhook-id: msg_42
    webhook-timestamp: 1763996400
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

While a rotated-out secret is in its grace period the header holds one ``v1,`` entry
per secret, separated by spaces; either one matching is enough. Give :func:`verify`
the raw body exactly as received (not re-serialised JSON).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Union

from .errors import PicloudError

__all__ = ["WebhookVerificationError", "sign", "verify"]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = timedelta(minutes=5)

Secrets = Union[str, Sequence[str]]


class WebhookVerificationError(PicloudError):
    """A delivery that must not be trusted. ``code`` says why:

    ``webhook_missing_header``, ``webhook_invalid_timestamp``,
    ``webhook_timestamp_too_old``, ``webhook_timestamp_too_new``,
    ``webhook_invalid_signature`` or ``webhook_invalid_secret``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(0, code, message)


def _key(secret: str) -> bytes:
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            "webhook_invalid_secret", "the secret must be 'whsec_' and standard base64"
        ) from None
    if not key:
        raise WebhookVerificationError("webhook_invalid_secret", "the secret's key is empty")
    return key


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int | datetime, body: bytes | str) -> str:
    """The ``webhook-signature`` entry (``v1,<base64>``) for one delivery: what a sender
    computes, and handy to build test requests."""
    seconds = int(timestamp.timestamp()) if isinstance(timestamp, datetime) else int(timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = _signature(_key(secret), msg_id, str(seconds), raw)
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None or value == "":
        raise WebhookVerificationError("webhook_missing_header", f"missing {name} header")
    return value


def verify(
    secret_or_secrets: Secrets,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    *,
    now: datetime | float | None = None,
) -> Any:
    """Checks one delivery and returns its body parsed as JSON.

    ``secret_or_secrets`` is the trigger's secret, or several (the new and the previous
    one while rotating): a signature by any of them is accepted. ``headers`` is any
    mapping of the request's headers (names in any case). The timestamp must lie within
    ``tolerance`` of ``now`` (default: the current time), which stops replays.

    Raises :class:`WebhookVerificationError` when a header is missing, the timestamp is
    malformed or out of tolerance, or no signature matches (compared in constant time).
    """
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else secret_or_secrets
    if not secrets:
        raise WebhookVerificationError("webhook_invalid_secret", "no secret given")
    keys = [_key(secret) for secret in secrets]
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookVerificationError(
            "webhook_invalid_timestamp", f"webhook-timestamp {timestamp!r} is not an integer"
        )
    if now is None:
        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    sent = int(timestamp)
    window = tolerance.total_seconds()
    if sent < current - window:
        raise WebhookVerificationError(
            "webhook_timestamp_too_old",
            f"the delivery was signed {int(current - sent)} s ago, more than {window:g} s",
        )
    if sent > current + window:
        raise WebhookVerificationError(
            "webhook_timestamp_too_new",
            f"the delivery is signed {int(sent - current)} s in the future, more than {window:g} s",
        )
    raw = body.encode() if isinstance(body, str) else body
    candidates = []
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidates.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    matched = False
    for key in keys:
        expected = _signature(key, msg_id, timestamp, raw)
        for candidate in candidates:
            # Every pair is compared, whatever matched first: constant time per pair.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            "webhook_invalid_signature", "no webhook-signature entry matches the secret"
        )
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
