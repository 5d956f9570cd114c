"""The event loop's default executor, counted: a thread held by a call that does not return shows in the metrics.

The operator's outbound calls run on the event loop with bounded timeouts; what still runs on a
thread (name resolution, library calls) goes through this executor. A call that hangs there holds
a worker until it returns, and once every worker is held, everything else that needs a thread
waits: `ballast_executor_oldest_job_seconds` and `ballast_executor_jobs_running` make that visible.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ballast.observability import metrics

T = TypeVar("T")


class CountedExecutor(ThreadPoolExecutor):
    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="ballast-executor")
        self.workers: int = self._max_workers
        self._started: dict[int, float] = {}  # running job -> when it started (monotonic)
        self._waiting = 0
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        job = next(self._ids)
        with self._lock:
            self._waiting += 1

        def run() -> T:
            with self._lock:
                self._waiting -= 1
                self._started[job] = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    del self._started[job]

        return super().submit(run)

    def running(self) -> int:
        with self._lock:
            return len(self._started)

    def waiting(self) -> int:
        with self._lock:
            return self._waiting

    def oldest_job_seconds(self) -> float:
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest


def install(loop: Any) -> CountedExecutor:
    """Make a counted executor the loop's default one, and export its counts."""
    executor = CountedExecutor()
    loop.set_default_executor(executor)
    metrics.executor_workers.set(executor.workers)
    metrics.executor_running.set_function(executor.running)
    metrics.executor_waiting.set_function(executor.waiting)
    metrics.executor_oldest_job.set_function(executor.oldest_job_seconds)
    return executor
