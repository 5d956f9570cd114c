"""A webhook receiver on 127.0.0.1 for the gates' e2e tests: it verifies every call's token with a TokenReview
against the real API server (audience: its own URL, as the caller must have asked for) and answers by path:

- `/pass`: 200 with a verdict of pass and a score; `/refuse`: 403 with a message;
- `/hang`: never answers (until the receiver stops); `/confirm`: `confirm_code`, which a test changes.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

HOST = "localhost"  # a name: admission refuses literal loopback addresses; the operator allows this host name


@dataclass
class Call:
    path: str
    payload: dict[str, Any]
    user: str | None  # who the token says sent it; None when the TokenReview refused it
    answered: int | None = None


@dataclass
class GateReceiver:
    kubeconfig: Path
    calls: list[Call] = field(default_factory=list)
    confirm_code: int = 409
    hanging: int = 0  # calls held open now
    _server: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"http://{HOST}:{self._server.server_address[1]}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                user = receiver.review(token, receiver.url(self.path))
                call = Call(self.path, payload, user)
                with receiver._lock:
                    receiver.calls.append(call)
                if user is None:
                    return self._answer(call, 401, {"message": "token refused by TokenReview"})
                if self.path.startswith("/hang"):
                    with receiver._lock:
                        receiver.hanging += 1
                    receiver._stopping.wait()
                    return None
                if self.path.startswith("/refuse"):
                    return self._answer(call, 403, {"message": "golden set: 41/50 correct, 45 needed"})
                if self.path.startswith("/confirm"):
                    code = receiver.confirm_code
                    return self._answer(call, code, {"message": "confirmed" if code < 300 else "waiting for on-call"})
                return self._answer(call, 200, {"verdict": "pass", "scores": {"accuracy": 0.96}})

            def _answer(self, call: Call, code: int, body: dict[str, Any]) -> None:
                call.answered = code
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def review(self, token: str, audience: str) -> str | None:
        """The TokenReview's user when the API server authenticates `token` for `audience`, else None."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [audience]}}  # fmt: skip
        tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        tls.load_cert_chain(user["client-certificate"], user["client-key"])
        with httpx.Client(verify=tls, timeout=10) as client:
            answer = client.post(f"{cluster['server']}/apis/authentication.k8s.io/v1/tokenreviews", json=body)
        answer.raise_for_status()
        status = answer.json().get("status", {})
        if not status.get("authenticated") or audience not in status.get("audiences", []):
            return None
        return str(status["user"]["username"])

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]
