"""PerKeyRunner: one worker per key: runs of a key never overlap, and requests during a run coalesce into one more.

The reconciler and the kill-switch dispatcher both work this way: any number of events ask, one
pass at a time acts on fresh state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class PerKeyRunner(Generic[K]):
    """Holds memory of a key only while a run of it is waiting or running: an idle key costs nothing, so the keys
    of deleted objects are never kept."""

    def __init__(self, work: Callable[[K], Awaitable[None]], on_error: Callable[[K, Exception], None]) -> None:
        self.work = work
        self.on_error = on_error
        self.locks: dict[K, asyncio.Lock] = {}
        self.users: dict[K, int] = {}  # runs of each key waiting for or holding its lock
        self.pending: dict[K, float] = {}  # keys asked for and not started yet -> when first asked (monotonic)
        self.tasks: set[asyncio.Task[None]] = set()
        self.paused = False

    def notify(self, key: K) -> None:
        """Ask for a run of `key`; coalesces with one already waiting; dropped while paused."""
        if self.paused or key in self.pending:
            return
        self.pending[key] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._run(key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, key: K) -> None:
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] = self.users.get(key, 0) + 1
        try:
            async with lock:
                self.pending.pop(key, None)
                try:
                    await self.work(key)
                except Exception as error:  # a failed run is the caller's to retry; it never kills the operator
                    self.on_error(key, error)
        finally:
            self.users[key] -= 1
            if not self.users[key]:
                del self.users[key], self.locks[key]

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting request has waited for its run to start (0 when none waits): the lag."""
        oldest = min(self.pending.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    async def pause(self) -> None:
        """Drop every request and cancel every run until `resume()` (a standby acts on nothing)."""
        self.paused = True
        await self.stop()
        self.pending.clear()  # runs cancelled before they started never cleared their key

    def resume(self) -> None:
        self.paused = False

    async def stop(self) -> None:
        """Cancel every run (shutdown: state is in status, the next operator resumes from there)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
