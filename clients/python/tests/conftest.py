"""Fixtures: the real picloud binary on 127.0.0.1, on SQLite and (when
PICLOUD_TEST_DATABASE_URL is set) on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Callable

import pytest

import picloud

from .support.proxy import TcpProxy
from .support.server import PicloudServer, PostgresDatabase

PG_URL = os.environ.get("PICLOUD_TEST_DATABASE_URL")
NO_PG = "PICLOUD_TEST_DATABASE_URL is unset: set it to a PostgreSQL superuser URL to run this"

ServerFactory = Callable[..., PicloudServer]


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest) -> str:
    """Runs a test once per storage; PostgreSQL only with PICLOUD_TEST_DATABASE_URL."""
    if request.param == "postgres" and not PG_URL:
        pytest.skip(NO_PG)
    return str(request.param)


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    """Starts servers (``make_server(storage="sqlite", env={...})``), disposed after."""
    started: list[PicloudServer] = []
    databases: list[PostgresDatabase] = []

    def make(storage: str = "sqlite", env: dict[str, str] | None = None) -> PicloudServer:
        database_url = None
        if storage == "postgres":
            assert PG_URL, NO_PG
            database = PostgresDatabase(PG_URL)
            databases.append(database)
            database_url = database.url
        server = PicloudServer(env=env, database_url=database_url)
        started.append(server)
        return server

    yield make
    for server in started:
        server.dispose()
    for database in databases:
        database.drop()


@pytest.fixture(scope="session")
def shared_server() -> Iterator[PicloudServer]:
    """One SQLite server for the tests that only need an app of their own."""
    server = PicloudServer()
    yield server
    server.dispose()


@pytest.fixture
def client(shared_server: PicloudServer) -> Iterator[picloud.Client]:
    """A client with an ``app:admin`` key of a fresh app on the shared server."""
    app, key = shared_server.create_app()
    with picloud.Client(shared_server.url, api_key=key, app=app) as c:
        yield c


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[Callable[[], int]], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(target_port: Callable[[], int]) -> TcpProxy:
        proxy = TcpProxy(target_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
