"""An HTTP proxy in front of Prometheus that can stop answering some queries: it accepts them, reads them, and
never says a word, as a Prometheus wedged on an expensive query does. The other queries pass through."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Matcher = Callable[[str], bool]


class _Handler(BaseHTTPRequestHandler):
    server: Stall
    protocol_version = "HTTP/1.1"  # keep-alive, as clients use Prometheus

    def do_GET(self) -> None:
        self._relay(b"")

    def do_POST(self) -> None:
        self._relay(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _relay(self, body: bytes) -> None:
        query = urllib.parse.unquote_plus(urllib.parse.urlsplit(self.path).query + "&" + body.decode(errors="replace"))
        if self.server.stalls(query):
            self.server.stalled.add(1)
            self.server.released.wait()  # no answer at all, for as long as the test wants
            self.close_connection = True
            return
        upstream = http.client.HTTPConnection(*self.server.target, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        return None


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self.lock:
            self.value += amount


class Stall(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target = target
        self.matcher: Matcher | None = None
        self.released = threading.Event()
        self.released.set()
        self.stalled = _Counter()  # queries held without an answer so far
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    def stalls(self, query: str) -> bool:
        matcher = self.matcher
        return matcher is not None and matcher(query)

    def stall(self, matcher: Matcher) -> None:
        """From now on, queries that `matcher` picks get no answer, until `release()`."""
        self.released.clear()
        self.matcher = matcher

    def release(self) -> None:
        """Answer again; the queries held so far are dropped without an answer (their connections closed)."""
        self.matcher = None
        self.released.set()

    def close(self) -> None:
        self.release()
        self.shutdown()
        self.server_close()
