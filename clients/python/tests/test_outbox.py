"""picloud.outbox.publish inside the app's own PostgreSQL transaction (docs/sources.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import pytest

import picloud
from picloud import outbox

from .conftest import NO_PG, PG_URL, ServerFactory
from .support.server import PostgresDatabase, picloud_binary, wait_for

pytestmark = pytest.mark.skipif(not PG_URL, reason=NO_PG)


@pytest.fixture
def app_database() -> Iterator[PostgresDatabase]:
    """The app's own database, with the outbox schema installed by the CLI."""
    assert PG_URL
    database = PostgresDatabase(PG_URL, prefix="picloud_py_app")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICLOUD_")}
    subprocess.run(
        [picloud_binary(), "sources", "install", "--database-url", database.url],
        env=env | {"NO_COLOR": "1"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield database
    database.drop()


def relayed(client: picloud.Client, topic: str, count: int) -> list[picloud.types.LoggedEvent]:
    def read() -> list[picloud.types.LoggedEvent] | None:
        try:
            events = client.events.read(topic)["events"]
        except picloud.NotFoundError:
            return None  # the topic is created by the first relayed row
        return events if len(events) >= count else None

    return wait_for(f"{count} relayed events", read, timeout=30)


def test_committed_rows_are_relayed_and_rolled_back_ones_never(
    make_server: ServerFactory, app_database: PostgresDatabase
) -> None:
    import psycopg

    server = make_server()
    app, key = server.create_app()
    with picloud.Client(server.url, api_key=key, app=app) as client:
        source = client.sources.create(app_database.url, schema="picloud")
        assert source["kind"] == "postgres_outbox"
        assert source["enabled"] is True

        with psycopg.connect(app_database.url) as conn:
            conn.execute("CREATE TABLE orders (id INT PRIMARY KEY, total NUMERIC)")
            conn.commit()
            with conn.transaction():
                conn.execute("INSERT INTO orders VALUES (1042, 99.5)")
                row = outbox.publish(conn, "orders", "order.placed", {"id": 1042, "total": 99.5})
            assert row > 0

            def rolled_back() -> None:
                with conn.transaction():
                    conn.execute("INSERT INTO orders VALUES (1043, 5)")
                    outbox.publish(conn, "orders", "order.placed", {"id": 1043})
                    raise LookupError("the app changes its mind")

            with pytest.raises(LookupError):
                rolled_back()

            with conn.transaction():
                outbox.publish(conn, "orders", None, "marker", idempotency_key="marker-1")
                outbox.publish(conn, "orders", None, "marker", idempotency_key="marker-1")
            order_ids = [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id")]

        events = relayed(client, "orders", 2)
        # The marker committed after the rolled-back row: once it is in, the rolled-back
        # row would be too if it had been relayed.
        assert [(e["seq"], e["type"], e["data"]) for e in events] == [
            (1, "order.placed", {"id": 1042, "total": 99.5}),
            (2, "message", "marker"),
        ]
        assert order_ids == [1042]
        status = wait_for(
            "the relay to report",
            lambda: (s := client.sources.get(source["id"])["status"])["relayed_total"] >= 3 and s,
        )
        assert status["connected"] is True


def test_publish_async_on_an_async_connection(
    make_server: ServerFactory, app_database: PostgresDatabase
) -> None:
    import psycopg

    server = make_server()
    app, key = server.create_app()

    async def main() -> int:
        conn = await psycopg.AsyncConnection.connect(app_database.url)
        async with conn, conn.transaction():
            return await outbox.publish_async(conn, "jobs", "job.queued", {"n": 1})

    with picloud.Client(server.url, api_key=key, app=app) as client:
        client.sources.create(app_database.url)
        assert asyncio.run(main()) > 0
        [event] = relayed(client, "jobs", 1)
    assert (event["type"], event["data"]) == ("job.queued", {"n": 1})
