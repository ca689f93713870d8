"""Runs the real ``picloud`` binary for the tests, as the TypeScript client's
``test/support/picloud-server.ts`` does: its own port on 127.0.0.1, a fresh database
(SQLite in a temp dir, or a fresh PostgreSQL database), killed afterwards.

The binary comes from ``PICLOUD_BIN``, else ``<repo>/target/debug/picloud``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parents[4]
LISTENING = re.compile(r"listening addr=127\.0\.0\.1:(\d+)")
ADMIN_KEY = re.compile(r"\b(pk_[A-Za-z0-9_-]+)")


def picloud_binary() -> str:
    binary = os.environ.get("PICLOUD_BIN") or str(REPO / "target" / "debug" / "picloud")
    if not Path(binary).is_file():
        raise RuntimeError(
            f"picloud binary not found at {binary}: build it (cargo build -p picloud) "
            "or set PICLOUD_BIN"
        )
    return binary


def database_url_with(url: str, database: str) -> str:
    """``url`` (a PostgreSQL URL) pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


class PostgresDatabase:
    """A fresh database with a random name on the test cluster, dropped afterwards."""

    def __init__(self, admin_url: str, prefix: str = "picloud_py") -> None:
        import psycopg

        self.admin_url = admin_url
        self.name = f"{prefix}_{secrets.token_hex(6)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = database_url_with(admin_url, self.name)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def wait_for(what: str, check: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Polls ``check()`` until it returns something truthy, or fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}") from last_error
        time.sleep(interval)


class PicloudServer:
    """One server process over a data dir (and database) that outlive restarts."""

    def __init__(self, env: dict[str, str] | None = None, database_url: str | None = None):
        self.data_dir = tempfile.mkdtemp(prefix="picloud-py-")
        self.database_url = database_url or f"sqlite://{self.data_dir}/picloud.db"
        self.env = env or {}
        self.port = 0
        self.admin_key = ""
        self.output = ""
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._spawn()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "PICLOUD_BIND": f"127.0.0.1:{self.port}",
            "PICLOUD_DATA_DIR": self.data_dir,
            "PICLOUD_DATABASE_URL": self.database_url,
            "PICLOUD_SHUTDOWN_GRACE_SEC": "1",
            "PICLOUD_WEBHOOK_ALLOW_PRIVATE": "true",
            "PICLOUD_SOURCE_ALLOW_PRIVATE": "true",
            "NO_COLOR": "1",
            **self.env,
        }
        process = subprocess.Popen(
            [picloud_binary(), "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._process = process
        start = len(self.output)

        def collect() -> None:
            assert process.stdout is not None
            for line in iter(process.stdout.readline, b""):
                with self._lock:
                    self.output += line.decode("utf-8", "replace")

        threading.Thread(target=collect, daemon=True).start()

        def listening() -> str | None:
            if process.poll() is not None:
                raise RuntimeError(f"picloud exited:\n{self.output}")
            with self._lock:
                match = LISTENING.search(self.output, start)
            return match.group(1) if match else None

        self.port = int(wait_for("picloud to listen", listening, timeout=60))
        if not self.admin_key:
            match = ADMIN_KEY.search(self.output)
            self.admin_key = match.group(1) if match else ""

    def kill(self) -> None:
        """SIGKILL: no goodbye to any client."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def restart(self) -> None:
        """Kills it and starts it again on the same port, data dir and database."""
        self.kill()
        self._spawn()

    def dispose(self) -> None:
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def run_cli(self, *args: str, stdin: str | None = None) -> str:
        """Runs ``picloud ARGS`` against this server's data dir and database."""
        env = {
            **os.environ,
            "PICLOUD_DATA_DIR": self.data_dir,
            "PICLOUD_DATABASE_URL": self.database_url,
            "NO_COLOR": "1",
        }
        result = subprocess.run(
            [picloud_binary(), *args],
            env=env,
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"picloud {' '.join(args)} failed:\n{result.stderr.decode()}")
        return result.stdout.decode()

    def create_app(
        self, app: str | None = None, scopes: list[str] | None = None
    ) -> tuple[str, str]:
        """Creates an app and a key for it (``app:admin`` by default): (app, key)."""
        app = app or f"app-{secrets.token_hex(4)}"
        admin = {"authorization": f"Bearer {self.admin_key}"}
        with httpx.Client(base_url=self.url, headers=admin, timeout=30) as http:
            created = http.post("/v1/apps", json={"id": app, "name": app})
            assert created.status_code == 201, created.text
            key = http.post(
                f"/v1/apps/{app}/keys",
                json={"name": "backend", "scopes": scopes or ["app:admin"]},
            )
            assert key.status_code == 201, key.text
            return app, key.json()["key"]
