"""Contract checks beside the reconcile, never inside it: a slow Prometheus never delays a kill switch.

A check starts at most once per `rollout.interval` while a canary is judged. It judges the canary
as the last reconcile wrote it (revision, step, weights) and its verdict is bound to that step
(`rollout/check_scope.py`), so a verdict that outlives its step counts for nothing. The tick starts
due checks without a reconcile; a finished check keeps its verdict and asks for one, so a held
canary costs one reconcile (one read of the object) per check. The verdict is dropped only once
the status write that carries it has succeeded: a conflict retries with the verdict, never without.
Memory only: a check never rewrites status by itself, and a restarted operator simply checks again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime

from ballast.analysis.check import run_check
from ballast.analysis.judge import error_result
from ballast.analysis.providers.base import MetricsProvider
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Analysis, ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.api.types import parse_duration
from ballast.rollout.check_scope import began_in
from ballast.workloads import render

log = logging.getLogger("ballast.checks")
Key = tuple[str, str]
NO_PROVIDER = "no metrics provider: run the operator with --prometheus-url"


def judged(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """A canary is under contract checks from its shadow phase or first step until it leaves (or a switch holds it)."""
    active = status.current_step is not None or status.mirror_revision is not None
    return (
        bool(spec.contract.objectives)
        and status.canary_revision is not None
        and active
        and status.phase in ("Progressing", "Promoting", "Paused")
        and not (status.kill_switch.sources or status.kill_switch.engaged)
    )


def _error_verdict(spec: ModelDeploymentSpec, canary: str, now: datetime, reason: str) -> Analysis:
    results = [error_result(o, reason) for o in spec.contract.objectives]
    return Analysis(at=format_time(now), revision=canary, window=spec.contract.window, verdict="Error",
                    objectives=results)  # fmt: skip


class ContractChecks:
    def __init__(self, provider: MetricsProvider | None, notify: Callable[[str, str], None]) -> None:
        self.provider = provider
        self.notify = notify
        self.last_check: dict[Key, datetime] = {}  # when each canary's last check started
        self.running: dict[Key, asyncio.Task[None]] = {}
        self.verdicts: dict[Key, Analysis] = {}  # finished checks not yet written to status
        # What each canary's next check judges: the spec and the status the last reconcile wrote.
        self.subjects: dict[Key, tuple[ModelDeploymentSpec, ModelDeploymentStatus]] = {}

    def verdict(self, key: Key) -> Analysis | None:
        """The verdict of a finished check for the next decision; it stays until `written`."""
        return self.verdicts.get(key)

    def written(self, key: Key, verdict: Analysis | None) -> None:
        """The status write that carried `verdict` succeeded (or had nothing to write): it is not handed on again."""
        if verdict is not None and self.verdicts.get(key) is verdict:
            del self.verdicts[key]

    def track(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        """After a reconcile wrote `status`: what the next check judges; starts it if one is due."""
        if not judged(spec, status):
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
        """Standing by: no check runs, and no verdict of an earlier term survives to judge a window long gone."""
        for key in {*self.subjects, *self.last_check, *self.verdicts, *self.running}:
            self.forget(key)

    async def stop(self) -> None:
        checks = list(self.running.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        if self.provider is not None:
            await self.provider.close()

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
        canary = status.canary_revision
        assert canary is not None
        try:
            if self.provider is None:
                verdict = _error_verdict(spec, canary, now, NO_PROVIDER)
            else:
                services = {r: render.workload_name(key[1], r) for r in (canary, status.stable_revision) if r}
                replicas = {r.name: r.ready_replicas for r in status.revisions}
                verdict = await run_check(
                    self.provider, spec, key[0], key[1], canary, status.stable_revision, services, now, replicas
                )
        except Exception as error:  # whatever stops a check is an Error verdict: it holds, and counts to the deadline
            log.exception("contract check of %s/%s could not run", *key)
            verdict = _error_verdict(spec, canary, now, f"the check could not run: {error}")
        self.verdicts[key] = began_in(verdict, status)
        self.notify(*key)

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self.running.get(key) is task:
            del self.running[key]
