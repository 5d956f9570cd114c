"""A TCP switch in front of a server: tests turn it off to make the server unreachable, then on again."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from typing import Any


class _Forward(socketserver.BaseRequestHandler):
    server: Switch

    def handle(self) -> None:
        if not self.server.enabled.is_set():
            return  # closing at once: the client sees the server as unreachable
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            upstream.settimeout(None)  # a silent server stays silent: the switch adds no timeout of its own
            self.server.track(self.request, upstream)
            pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            pump.start()
            _copy(self.request, upstream)
            pump.join(timeout=10)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Switch(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.enabled = threading.Event()
        self.enabled.set()
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def track(self, *sockets: socket.socket) -> None:
        with self.lock:
            self.connections.extend(sockets)

    def off(self) -> None:
        """Refuse new connections and cut the open ones (clients keep connections alive)."""
        self.enabled.clear()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    def on(self) -> None:
        self.enabled.set()

    def close(self, *_: Any) -> None:
        self.shutdown()
        self.server_close()
