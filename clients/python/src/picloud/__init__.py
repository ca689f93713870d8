"""PiCloud's Python server SDK.

>>> import picloud
>>> client = picloud.Client("http://127.0.0.1:8080", api_key="pk_...", app="shop")
>>> client.pubsub.publish("orders", "order.created", data={"id": 42})["seq"]

:class:`Client` (and :class:`AsyncClient`) cover every route of the API in namespaces
(``pubsub``, ``topics``, ``events``, ``triggers``, ``deliveries``, ``dead_letters``,
``keys``, ``instance_keys``, ``functions``, ``realtime``, ``scripts``, ``sources``,
``apps``, ``admin``, ``system``); :mod:`picloud.webhooks` verifies deliveries;
:mod:`picloud.outbox` publishes inside your own PostgreSQL transaction.
"""

from . import cursor, outbox, types, webhooks
from ._async_api import AsyncClient, new_idempotency_key
from ._backoff import BackoffPolicy
from ._sync_api import Client
from ._transport import RetryPolicy
from ._version import __version__
from .errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PicloudError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from .functions import FunctionResponse
from .realtime import AsyncSubscription, Event, LostRange, Reset, Subscription
from .webhooks import WebhookVerificationError

__all__ = [
    "AsyncClient",
    "AsyncSubscription",
    "AuthenticationError",
    "BackoffPolicy",
    "Client",
    "ConflictError",
    "Event",
    "FunctionResponse",
    "InvalidRequestError",
    "LostRange",
    "NotFoundError",
    "PermissionDeniedError",
    "PicloudError",
    "RateLimitedError",
    "Reset",
    "RetryPolicy",
    "ServerError",
    "Subscription",
    "TransportError",
    "WebhookVerificationError",
    "__version__",
    "cursor",
    "new_idempotency_key",
    "outbox",
    "types",
    "webhooks",
]
