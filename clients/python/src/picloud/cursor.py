"""Resume cursors: ``topic:seq`` pairs joined by ``,``, topics sorted.

A topic name may contain ``:``; the seq follows the last one. A port of
``@picloud/client``'s ``cursor.ts``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def parse_cursor(cursor: str) -> dict[str, int]:
    """Reads a cursor into topic -> seq. Malformed parts are skipped."""
    positions: dict[str, int] = {}
    for part in cursor.split(","):
        topic, colon, seq = part.rpartition(":")
        if not colon or not topic or not (seq.isascii() and seq.isdigit()):
            continue
        positions[topic] = int(seq)
    return positions


def format_cursor(positions: Mapping[str, int]) -> str:
    """Writes topic -> seq as a cursor, topics sorted."""
    return ",".join(f"{topic}:{positions[topic]}" for topic in sorted(positions))


class CursorTracker:
    """What a subscriber has seen, per topic: the cursor to resume from, and the guard
    that never lets the same (topic, seq) through twice, whatever the connections did."""

    def __init__(self, topics: Iterable[str], cursor: str | None = None) -> None:
        self._topics = frozenset(topics)
        self._positions: dict[str, int] = {}
        if cursor:
            for topic, seq in parse_cursor(cursor).items():
                if topic in self._topics:
                    self._positions[topic] = seq

    @property
    def cursor(self) -> str | None:
        """The cursor covering every topic with a known position, or None if none has."""
        return format_cursor(self._positions) if self._positions else None

    def position(self, topic: str) -> int | None:
        """The last seq seen on ``topic``, if known."""
        return self._positions.get(topic)

    def accept(self, topic: str, seq: int) -> bool:
        """Records an event; False when it is one already seen (a duplicate to drop)."""
        if topic not in self._topics:
            return False
        last = self._positions.get(topic)
        if last is not None and seq <= last:
            return False
        self._positions[topic] = seq
        return True

    def adopt_start(self, cursor: str) -> None:
        """Takes a stream's starting cursor for topics that have no position yet."""
        for topic, seq in parse_cursor(cursor).items():
            if topic in self._topics and topic not in self._positions:
                self._positions[topic] = seq

    def apply_reset(self, cursor: str, lost: Iterable[tuple[str, int]]) -> None:
        """Applies a ``reset``: positions move to where the server continues, even
        backwards, so later events are not mistaken for duplicates. A lost range ends at
        its ``to_seq``, so the next event, ``to_seq + 1``, counts."""
        for topic, seq in parse_cursor(cursor).items():
            if topic in self._topics:
                self._positions[topic] = seq
        for topic, to_seq in lost:
            if topic in self._topics:
                self._positions[topic] = to_seq
