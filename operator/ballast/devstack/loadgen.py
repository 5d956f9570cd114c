"""A load generator: real HTTP through the Gateway at a set rate and concurrency, bounded in count and time.

It reports what it saw per backend (the simulator's `x-served-by` header) and per status code.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from ballast.devstack.simulator import SERVED_BY_HEADER


@dataclass
class LoadReport:
    sent: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_backend: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    first_error_at: float | None = None  # time.monotonic() of the first 5xx answered by a model server
    # Tokens the answers' `usage` fields report, per backend: what a client is billed for.
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)

    def share(self, backend_prefix: str) -> float:
        """Fraction of answered requests served by backends whose name starts with `backend_prefix`."""
        answered = sum(self.by_backend.values())
        hits = sum(n for name, n in self.by_backend.items() if name.startswith(backend_prefix))
        return hits / answered if answered else 0.0

    def tokens(self, backend_prefix: str = "") -> tuple[int, int]:
        """(prompt, completion) tokens of the answers from backends whose name starts with `backend_prefix`."""

        def total(counts: Counter[str]) -> int:
            return sum(n for name, n in counts.items() if name.startswith(backend_prefix))

        return total(self.prompt_tokens), total(self.completion_tokens)

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> str:
        backends = ", ".join(f"{name}={count}" for name, count in sorted(self.by_backend.items()))
        statuses = ", ".join(f"{code}={count}" for code, count in sorted(self.by_status.items()))
        return (
            f"{self.sent} requests in {self.seconds:.1f}s; status {statuses or '-'}; transport errors "
            f"{self.transport_errors}; p50 {self.percentile(50) * 1000:.0f}ms p95 {self.percentile(95) * 1000:.0f}ms; "
            f"backends {backends or '-'}"
        )


async def generate(
    url: str,
    *,
    total: int,
    rate: float,
    concurrency: int = 16,
    max_seconds: float = 60.0,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
    report: LoadReport | None = None,
) -> LoadReport:
    """Send up to `total` POSTs at `rate` per second, never more than `concurrency` at once or `max_seconds` long."""
    report = report if report is not None else LoadReport()
    # No max_tokens: the answer is as long as the model makes it, as for a client that sets no cap.
    payload = body or {"model": "model", "messages": [{"role": "user", "content": "Say hello."}]}
    request_headers = {**(headers or {}), **({"Host": host} if host else {})}
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    deadline = started + max_seconds

    async def one(http: httpx.AsyncClient) -> None:
        async with gate:
            if time.monotonic() >= deadline:
                return
            sent_at = time.monotonic()
            report.sent += 1
            try:
                response = await http.post(url, json=payload, headers=request_headers)
            except httpx.HTTPError:
                report.transport_errors += 1
                return
            report.latencies.append(time.monotonic() - sent_at)
            report.by_status[response.status_code] += 1
            # A breached sample is a failed model answer, not a gateway error without one.
            served = SERVED_BY_HEADER in response.headers
            if response.status_code >= 500 and served and report.first_error_at is None:
                report.first_error_at = time.monotonic()
            backend = response.headers.get(SERVED_BY_HEADER, "-")
            report.by_backend[backend] += 1
            if response.status_code == 200:
                _count_usage(report, backend, response)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(max_seconds), limits=limits) as http:
        tasks = []
        for index in range(total):
            due = started + index / rate
            now = time.monotonic()
            if due >= deadline or (stop is not None and stop.is_set()):
                break
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(http)))
        await asyncio.gather(*tasks)
    report.seconds = time.monotonic() - started
    return report


def _count_usage(report: LoadReport, backend: str, response: httpx.Response) -> None:
    try:
        usage = response.json().get("usage") or {}
    except ValueError:  # a streamed or non-JSON answer carries no usage
        return
    report.prompt_tokens[backend] += int(usage.get("prompt_tokens") or 0)
    report.completion_tokens[backend] += int(usage.get("completion_tokens") or 0)


def run(url: str, **options: Any) -> LoadReport:
    """Synchronous wrapper for tests and scripts."""
    return asyncio.run(generate(url, **options))


class Background:
    """Steady load in a thread until `stop()` (or its own bounds), for tests and demos."""

    def __init__(self, url: str, *, rate: float, max_seconds: float = 300, **options: Any) -> None:
        self.stop_event = threading.Event()
        self.report = LoadReport()  # filled while the load runs
        total = int(rate * max_seconds)

        def work() -> None:
            run(
                url,
                total=total,
                rate=rate,
                max_seconds=max_seconds,
                stop=self.stop_event,
                report=self.report,
                **options,
            )

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def stop(self) -> LoadReport:
        self.stop_event.set()
        self.thread.join(timeout=60)
        return self.report
