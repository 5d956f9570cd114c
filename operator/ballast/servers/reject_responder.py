"""`ballast responder`: the `reject` fallback, a deterministic error in place of a model answer.

Standard HTTPRoute has no direct-response filter, so a kill switch or budget that must refuse
answers routes to this small server. Every request gets the configured status (503 by default),
an OpenAI-style JSON error body and a Retry-After header, so clients and SDKs back off cleanly
instead of failing on an HTML page or a reset connection. `GET /healthz` answers 200 for probes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEALTH_PATH = "/healthz"


def error_body(status: int, message: str) -> bytes:
    """The error shape OpenAI-compatible clients parse (`error.message`, `error.type`, `error.code`)."""
    kind = "service_unavailable" if status == 503 else "server_error"
    payload = {"error": {"message": message, "type": kind, "param": None, "code": "model_unavailable"}}
    return json.dumps(payload).encode()


def handler_for(status: int, message: str, retry_after: int, served_by: str) -> type[BaseHTTPRequestHandler]:
    body = error_body(status, message)

    class Responder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self) -> str:
            return "ballast-responder"  # no runtime details in the Server header

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # drain the request so the connection can be reused
            healthy = self.command == "GET" and self.path == HEALTH_PATH
            payload = b'{"status":"ok"}' if healthy else body
            self.send_response(200 if healthy else status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-served-by", served_by)
            if retry_after and not healthy:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the logs during an incident

    return Responder


def serve(args: argparse.Namespace) -> int:
    served_by = os.environ.get("POD_NAME") or socket.gethostname()
    server = ThreadingHTTPServer((args.host, args.port), handler_for(args.status, args.message, args.retry_after,
                                                                      served_by))  # fmt: skip
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"ballast responder: {args.status} on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("responder", help="serve the reject fallback: a fixed JSON error with Retry-After")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default all)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--status", type=int, default=503, help="HTTP status of every answer (default 503)")
    parser.add_argument("--message", default="the model is unavailable", help="error.message of the JSON body")
    parser.add_argument("--retry-after", type=int, default=30, help="Retry-After seconds (0: no header)")
    parser.set_defaults(func=serve)
