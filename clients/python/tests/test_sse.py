"""The SSE parser and the cursor, on the edge cases of the specs."""

from __future__ import annotations

import pytest

from picloud._sse import SseMessage, SseParser
from picloud.cursor import CursorTracker, format_cursor, parse_cursor

STREAM = (
    "\ufeffid: chat:lobby:7,orders:12\r\nevent: hello\r\n"
    'data: {"protocol":1}\r\n\r\n'
    ": heartbeat\n\n"
    "retry: 2500\n"
    "id: orders:13\nevent: order.created\ndata: line one\ndata: line two\n\n"
    "data: no event name\r\r"
    "id: bad\0id\ndata: keeps the last id\n\n"
)
EXPECTED = [
    SseMessage("hello", '{"protocol":1}', "chat:lobby:7,orders:12"),
    SseMessage("order.created", "line one\nline two", "orders:13"),
    SseMessage("message", "no event name", "orders:13"),
    SseMessage("message", "keeps the last id", "orders:13"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_frames_survive_any_chunking(size: int) -> None:
    raw = STREAM.encode("utf-8")
    parser = SseParser()
    messages = []
    for start in range(0, len(raw), size):
        messages += parser.feed(raw[start : start + size])
    assert messages == EXPECTED
    assert parser.retry_ms == 2500
    assert parser.comments == 1


def test_a_split_utf8_sequence_and_a_split_crlf_are_joined() -> None:
    parser = SseParser()
    raw = "data: päivää\r".encode()
    cut = raw.index(b"\xc3") + 1
    assert parser.feed(raw[:cut]) == []
    assert parser.feed(raw[cut:]) == []
    # The LF of that CRLF comes with the next chunk: it must not end the frame.
    assert parser.feed(b"\ndata: b\n\n") == [SseMessage("message", "päivää\nb", "")]


def test_cursor_round_trip_and_topic_names_with_colons() -> None:
    assert parse_cursor("chat:lobby:7,orders:12,bad,x:y") == {"chat:lobby": 7, "orders": 12}
    assert format_cursor({"orders": 12, "chat:lobby": 7}) == "chat:lobby:7,orders:12"


def test_tracker_drops_duplicates_and_applies_resets() -> None:
    tracker = CursorTracker(["a", "b"], "a:3,zz:9")
    assert tracker.cursor == "a:3"
    assert not tracker.accept("a", 3)
    assert tracker.accept("a", 4)
    tracker.adopt_start("a:1,b:5")
    assert tracker.cursor == "a:4,b:5"
    tracker.apply_reset("b:2", [])
    assert tracker.accept("b", 3)
    tracker.apply_reset("a:9", [("a", 8)])
    assert tracker.position("a") == 8
    assert not tracker.accept("other", 1)
