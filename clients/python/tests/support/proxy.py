"""A TCP proxy on 127.0.0.1 in front of a server, so a test can break connections the
way networks do: drop an answer after the server sent it, freeze a stream, cut all."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable


class TcpProxy:
    def __init__(self, target_port: Callable[[], int]) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._frozen: set[int] = set()
        self._drop_next_answer_of: Callable[[bytes], bool] | None = None
        #: Connections accepted so far.
        self.accepted = 0
        #: Request heads forwarded so far (first line of each chunk that starts one).
        self.requests: list[str] = []
        #: Answers dropped so far.
        self.dropped = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop_answer_once(self, matches: Callable[[bytes], bool]) -> None:
        """The next request whose bytes match is forwarded and answered by the server,
        but the answer is thrown away and the client's connection closed."""
        self._drop_next_answer_of = matches

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target_port()))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, upstream))
            state = {"drop": False}
            threading.Thread(
                target=self._pump_up, args=(client, upstream, state), daemon=True
            ).start()
            threading.Thread(
                target=self._pump_down, args=(upstream, client, state), daemon=True
            ).start()

    def _pump_up(
        self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]
    ) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if data[:8].split(b" ")[0] in (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE"):
                    self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                matcher = self._drop_next_answer_of
                if matcher is not None and matcher(data):
                    self._drop_next_answer_of = None
                    state["drop"] = True
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(upstream)

    def _pump_down(
        self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]
    ) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if state["drop"]:
                    # The server answered; the client never hears it.
                    self.dropped += 1
                    break
                while id(client) in self._frozen:
                    threading.Event().wait(0.05)
                    if self._closed:
                        return
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def freeze_all(self) -> None:
        """Stops relaying the server's bytes on every open connection, leaving them
        open: a half-dead connection only a silence watchdog can notice."""
        with self._lock:
            for client, _ in self._pairs:
                self._frozen.add(id(client))

    def cut_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
            self._frozen.clear()
        for client, upstream in pairs:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut_all()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
