"""Checks beside the reconcile, never inside it: a slow Prometheus never delays a kill switch.

A check starts at most once per `rollout.interval` while its subject is due one, on the status the
last reconcile wrote. The tick starts due checks without a reconcile; a finished check keeps its
result and asks for one, so a watched deployment costs one reconcile (one read of the object) per
check. The result is dropped only once the status write that carries it has succeeded: a conflict
retries with the result, never without. Memory only: a check never rewrites status by itself, and
a restarted operator simply checks again. `ContractChecks` judges canaries, `BurnWatch` the stable
revision after promotion.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

from ballast.analysis.providers.base import MetricsProvider
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.api.types import parse_duration

log = logging.getLogger("ballast.checks")
Key = tuple[str, str]
Result = TypeVar("Result")


class SideChecks(Generic[Result]):
    def __init__(self, provider: MetricsProvider | None, notify: Callable[[str, str], None]) -> None:
        self.provider = provider
        self.notify = notify
        self.last_check: dict[Key, datetime] = {}  # when each subject's last check started
        self.running: dict[Key, asyncio.Task[None]] = {}
        self.verdicts: dict[Key, Result] = {}  # finished checks not yet written to status
        # What each subject's next check measures: the spec and the status the last reconcile wrote.
        self.subjects: dict[Key, tuple[ModelDeploymentSpec, ModelDeploymentStatus]] = {}

    def due(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
        """Whether this deployment, as the last reconcile wrote it, is under these checks."""
        raise NotImplementedError

    async def run(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> Result:
        """One check; never raises."""
        raise NotImplementedError

    def verdict(self, key: Key) -> Result | None:
        """The result of a finished check for the next decision; it stays until `written`."""
        return self.verdicts.get(key)

    def written(self, key: Key, verdict: Result | None) -> None:
        """The status write that carried `verdict` succeeded (or had nothing to write): it is not handed on again."""
        if verdict is not None and self.verdicts.get(key) is verdict:
            del self.verdicts[key]

    def track(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        """After a reconcile wrote `status`: what the next check measures; starts it if one is due."""
        if not self.due(spec, status):
            self.forget(key)
            return
        self.subjects[key] = (spec, status)
        self._start_if_due(key, now)

    def start_due(self, now: datetime) -> None:
        """The tick: start every check that has fallen due (no reconcile, no API call)."""
        for key in list(self.subjects):
            self._start_if_due(key, now)

    def forget(self, key: Key) -> None:
        self.subjects.pop(key, None)
        self.last_check.pop(key, None)
        self.verdicts.pop(key, None)
        check = self.running.pop(key, None)
        if check is not None:
            check.cancel()

    def forget_all(self) -> None:
        """Standing by: no check runs, and no result of an earlier term survives to judge a window long gone."""
        for key in {*self.subjects, *self.last_check, *self.verdicts, *self.running}:
            self.forget(key)

    async def stop(self) -> None:
        checks = list(self.running.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)

    def _start_if_due(self, key: Key, now: datetime) -> None:
        spec, status = self.subjects[key]
        last = self.last_check.get(key)
        if key in self.running or (last is not None and now - last < parse_duration(spec.rollout.interval)):
            return
        self.last_check[key] = now
        task = asyncio.get_running_loop().create_task(self._check(key, spec, status, now))
        self.running[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    async def _check(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        self.verdicts[key] = await self.run(key, spec, status, now)
        self.notify(*key)

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self.running.get(key) is task:
            del self.running[key]
