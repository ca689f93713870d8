"""Delays between attempts: exponential with jitter, capped, reset after a success.

The same schedule as ``@picloud/client``'s ``backoff.ts``: each failure doubles the
delay up to a cap, and a random share of each delay (20 % by default) is taken off so
that clients dropped together do not all come back in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class BackoffPolicy:
    """Tuning for retry delays, in seconds."""

    #: The first delay.
    initial: float = 1.0
    #: The largest delay.
    maximum: float = 30.0
    #: How much each failure multiplies the delay.
    factor: float = 2.0
    #: The share of each delay taken off at random, 0..1.
    jitter: float = 0.2
    #: The random source (a test may pin it).
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)


class Backoff:
    """Counts consecutive failures and turns them into delays: 1 s, 2 s, 4 s, ... 30 s."""

    def __init__(self, policy: BackoffPolicy | None = None) -> None:
        self._policy = policy or BackoffPolicy()
        self._jitter = min(1.0, max(0.0, self._policy.jitter))
        self._base = self._policy.initial
        self._current = self._base

    def next(self) -> float:
        """The delay before the next attempt; each call grows the following one."""
        delay = min(self._current, self._policy.maximum)
        self._current = min(self._current * self._policy.factor, self._policy.maximum)
        return delay * (1 - self._jitter * self._policy.random())

    def reset(self) -> None:
        """Starts over from the first delay (call after a healthy connection)."""
        self._current = self._base

    def set_initial(self, seconds: float) -> None:
        """Uses the server's SSE ``retry:`` suggestion as the first delay from now on."""
        self._base = min(max(0.0, seconds), self._policy.maximum)
