"""Budget use measured beside the reconcile, like contract checks: a slow Prometheus never delays a kill switch.

Every ModelDeployment with `spec.budgets` is measured once per `rollout.interval`, whatever its
phase (spend does not stop at promotion). The last measurement stays in memory and is handed to
every reconcile, which writes it into status; a new one asks for a reconcile. Memory only: a
restarted or newly leading operator simply measures again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime

from ballast.analysis.providers.base import MetricsProvider
from ballast.analysis.usage import measure
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.api.types import parse_duration
from ballast.rollout.cost import Usage
from ballast.shell.contract_checks import NO_PROVIDER
from ballast.workloads import render

log = logging.getLogger("ballast.usage")
Key = tuple[str, str]


class UsageMeter:
    def __init__(self, provider: MetricsProvider | None, notify: Callable[[str, str], None]) -> None:
        self.provider = provider
        self.notify = notify
        self.last_started: dict[Key, datetime] = {}
        self.running: dict[Key, asyncio.Task[None]] = {}
        self.latest: dict[Key, Usage] = {}
        # What each deployment's next measurement covers: its spec and the revisions its status lists.
        self.subjects: dict[Key, tuple[ModelDeploymentSpec, ModelDeploymentStatus]] = {}

    def usage(self, key: Key) -> Usage | None:
        return self.latest.get(key)

    def track(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        """After a reconcile: measure this deployment from now on (if it has budgets), starting now if due."""
        if spec.budgets is None or not status.revisions:
            self.forget(key)
            return
        self.subjects[key] = (spec, status)
        self._start_if_due(key, now)

    def start_due(self, now: datetime) -> None:
        for key in list(self.subjects):
            self._start_if_due(key, now)

    def forget(self, key: Key) -> None:
        self.subjects.pop(key, None)
        self.last_started.pop(key, None)
        self.latest.pop(key, None)
        task = self.running.pop(key, None)
        if task is not None:
            task.cancel()

    def forget_all(self) -> None:
        for key in {*self.subjects, *self.last_started, *self.latest, *self.running}:
            self.forget(key)

    async def stop(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start_if_due(self, key: Key, now: datetime) -> None:
        spec, status = self.subjects[key]
        last = self.last_started.get(key)
        if key in self.running or (last is not None and now - last < parse_duration(spec.rollout.interval)):
            return
        self.last_started[key] = now
        task = asyncio.get_running_loop().create_task(self._measure(key, spec, status, now))
        self.running[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    async def _measure(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        assert spec.budgets is not None
        if self.provider is None:
            usage = Usage(format_time(now), spec.budgets.window, error=NO_PROVIDER)
        else:
            services = {r.name: render.workload_name(key[1], r.name) for r in status.revisions}
            usage = await measure(self.provider, spec, key[0], key[1], services, now)
        self.latest[key] = usage
        self.notify(*key)

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self.running.get(key) is task:
            del self.running[key]
        if not task.cancelled() and task.exception() is not None:  # `measure` reports errors itself: a bug
            log.error("usage of %s/%s could not be measured", *key, exc_info=task.exception())
