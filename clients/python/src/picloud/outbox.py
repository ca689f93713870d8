"""Publishing inside your own PostgreSQL transaction (docs/sources.md).

``picloud sources install --database-url postgres://...`` creates the ``picloud``
schema in the app's database, and ``client.sources.create(database_url=...)`` makes
PiCloud relay it. Then::

    with conn.transaction():
        conn.execute("INSERT INTO orders ...")
        picloud.outbox.publish(conn, "orders", "order.placed", {"id": 1042})

The event exists if and only if the transaction commits. Needs psycopg 3
(``pip install 'picloud[outbox]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["publish", "publish_async"]

DEFAULT_SCHEMA = "picloud"


def _statement(schema: str) -> Any:
    from psycopg import sql

    return sql.SQL("SELECT {}.publish(%s, %s, %s, %s)").format(sql.Identifier(schema))


def _params(
    topic: str, type: str | None, data: Any, idempotency_key: str | None
) -> tuple[Any, ...]:
    from psycopg.types.json import Jsonb

    return (topic, type or "message", Jsonb(data), idempotency_key)


def publish(
    conn: psycopg.Connection[Any],
    topic: str,
    type: str | None,
    data: Any,
    idempotency_key: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """Calls ``picloud.publish(topic, type, data, idempotency_key)`` on ``conn``, in
    whatever transaction it is in, and returns the outbox row's id. The event gets its
    seq when PiCloud relays the committed row; a rolled-back row is never published.
    ``type`` None means ``message``; ``data`` is any JSON value."""
    row = conn.execute(_statement(schema), _params(topic, type, data, idempotency_key)).fetchone()
    if row is None:  # pragma: no cover - the function always returns a row
        raise RuntimeError("picloud.publish returned no row")
    return int(row[0])


async def publish_async(
    conn: psycopg.AsyncConnection[Any],
    topic: str,
    type: str | None,
    data: Any,
    idempotency_key: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> int:
    """:func:`publish` on a ``psycopg.AsyncConnection``."""
    cursor = await conn.execute(_statement(schema), _params(topic, type, data, idempotency_key))
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the function always returns a row
        raise RuntimeError("picloud.publish returned no row")
    return int(row[0])
