"""A streaming Server-Sent Events parser (the WHATWG "event stream interpretation").

UTF-8 with an optional leading BOM; lines end in CR, LF or CRLF; ``data`` may span
several lines (joined with ``\\n``); lines starting with ``:`` are comments; ``id`` is
ignored when it contains NUL; ``retry`` counts only when it is all digits. Chunks may
split anywhere, even inside a UTF-8 sequence or between the CR and LF of one line
break. A port of ``@picloud/client``'s ``sse-parser.ts``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class SseMessage:
    """One dispatched event."""

    #: The ``event`` field, or ``message`` when the frame named none.
    event: str
    #: The ``data`` lines joined with ``\\n``.
    data: str
    #: The last event ID at dispatch time (``""`` when no frame set one yet).
    id: str


class SseParser:
    """Parses one event stream; make a new parser for every connection."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._partial = ""
        self._skip_lf = False
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self.last_event_id = ""
        #: The last valid ``retry`` value seen (ms), for the caller to take.
        self.retry_ms: int | None = None
        #: Comment lines seen (``heartbeat``), for a caller that counts them.
        self.comments = 0

    def feed(self, chunk: bytes | str) -> list[SseMessage]:
        """Feeds the next chunk; returns the events it completed."""
        text = chunk if isinstance(chunk, str) else self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        out: list[SseMessage] = []
        start = 0
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                start = 1
        i = start
        n = len(text)
        while i < n:
            c = text[i]
            if c != "\n" and c != "\r":
                i += 1
                continue
            line = self._partial + text[start:i]
            self._partial = ""
            if c == "\r":
                if i + 1 < n:
                    if text[i + 1] == "\n":
                        i += 1
                else:
                    self._skip_lf = True  # the LF of a CRLF may come with the next chunk
            i += 1
            start = i
            message = self._line(line)
            if message is not None:
                out.append(message)
        self._partial += text[start:]
        return out

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        has_data = self._has_data
        message = SseMessage(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
        )
        self._data = []
        self._has_data = False
        self._event = ""
        return message if has_data else None
