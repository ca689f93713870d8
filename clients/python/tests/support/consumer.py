"""Runs a realtime subscription on a thread, as a worker would, and lets a test wait
for what it received."""

from __future__ import annotations

import queue
import threading
import time
from typing import Union

import picloud

Item = Union[picloud.Event, picloud.Reset]


class Consumer:
    def __init__(self, subscription: picloud.Subscription) -> None:
        self.subscription = subscription
        self.items: queue.Queue[Item] = queue.Queue()
        self.received: list[Item] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self.subscription:
                self.items.put(item)
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def wait_open(self, timeout: float = 20.0) -> str:
        """Waits until the stream's hello arrived (the cursor is known)."""
        deadline = time.monotonic() + timeout
        while self.subscription.cursor is None:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError("the subscription never opened")
            time.sleep(0.02)
        return self.subscription.cursor

    def take(self, count: int, timeout: float = 20.0) -> list[Item]:
        """The next ``count`` items, or an AssertionError naming what did arrive."""
        got: list[Item] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {count} items, got {got} (error: {self.error!r})")
            try:
                got.append(self.items.get(timeout=min(left, 0.1)))
            except queue.Empty:
                if self.error is not None:
                    raise AssertionError(f"the subscription failed after {got}") from self.error
        self.received.extend(got)
        return got

    def assert_quiet(self, seconds: float) -> None:
        """Nothing more arrives for ``seconds``."""
        try:
            extra = self.items.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected item {extra}")

    def stop(self) -> None:
        self.subscription.close()
        self.finished.wait(10)
        assert self.finished.is_set(), "the subscription did not stop"


def seqs(items: list[Item]) -> list[int]:
    return [item.seq for item in items if isinstance(item, picloud.Event)]
