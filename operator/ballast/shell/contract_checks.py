"""Contract checks beside the reconcile, never inside it: a slow Prometheus never delays a kill switch.

A check starts at most once per `rollout.interval` while a canary is judged; when it finishes it
keeps its verdict in memory and asks for a reconcile, which hands the verdict to the decision core.
Memory only: a check never rewrites status by itself, and a restarted operator simply checks again.
"""

from __future__ import annotations

import asyncio
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
from ballast.workloads import render

log = logging.getLogger("ballast.checks")
Key = tuple[str, str]


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


class ContractChecks:
    def __init__(self, provider: MetricsProvider | None, notify: Callable[[str, str], None]) -> None:
        self.provider = provider
        self.notify = notify
        self.last_check: dict[Key, datetime] = {}  # when each canary's last check started
        self.running: dict[Key, asyncio.Task[None]] = {}
        self.verdicts: dict[Key, Analysis] = {}  # finished checks not yet read by a reconcile

    def forget(self, key: Key) -> None:
        self.last_check.pop(key, None)
        self.verdicts.pop(key, None)

    def cancel_all(self) -> None:
        for check in list(self.running.values()):
            check.cancel()

    def verdict_if_due(
        self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
    ) -> Analysis | None:
        """The verdict of a finished check, if any; starts the next check at most once per rollout.interval."""
        if not judged(spec, status):
            self.forget(key)
            return None
        verdict = self.verdicts.pop(key, None)
        last = self.last_check.get(key)
        if key not in self.running and (last is None or now - last >= parse_duration(spec.rollout.interval)):
            self.last_check[key] = now
            task = asyncio.get_running_loop().create_task(self._check(key, spec, status, now))
            self.running[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        return verdict

    def next_due(
        self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
    ) -> datetime | None:
        """When the next check may start, while the canary is judged and none runs."""
        if not judged(spec, status) or key in self.running:
            return None
        return self.last_check.get(key, now) + parse_duration(spec.rollout.interval)

    async def _check(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        canary = status.canary_revision
        assert canary is not None
        if self.provider is None:
            results = [error_result(o, "no metrics provider: run the operator with --prometheus-url") for o in
                       spec.contract.objectives]  # fmt: skip
            verdict = Analysis(at=format_time(now), revision=canary, verdict="Error", objectives=results)
        else:
            services = {r: render.workload_name(key[1], r) for r in (canary, status.stable_revision) if r}
            verdict = await run_check(
                self.provider, spec, key[0], key[1], canary, status.stable_revision, services, now
            )
        self.verdicts[key] = verdict
        self.notify(*key)

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        self.running.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("contract check of %s/%s failed", *key, exc_info=task.exception())
