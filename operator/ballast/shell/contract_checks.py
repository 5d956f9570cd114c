"""Contract checks of a canary beside the reconcile (`side_checks.py`).

A check starts at most once per `rollout.interval` while a canary is judged. It judges the canary
as the last reconcile wrote it (revision, step, weights) and its verdict is bound to that step
(`rollout/check_scope.py`), so a verdict that outlives its step counts for nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ballast.analysis.check import run_check
from ballast.analysis.judge import error_result
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Analysis, ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.rollout.check_scope import began_in
from ballast.shell.side_checks import Key, SideChecks
from ballast.workloads import render

log = logging.getLogger("ballast.checks")
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


class ContractChecks(SideChecks[Analysis]):
    def due(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
        return judged(spec, status)

    async def run(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> Analysis:
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
        return began_in(verdict, status)

    async def stop(self) -> None:
        await super().stop()
        if self.provider is not None:
            await self.provider.close()
