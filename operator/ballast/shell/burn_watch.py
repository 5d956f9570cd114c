"""The burn-rate watch over the stable revision beside the reconcile (`side_checks.py`, `analysis/watch.py`).

It reads the stable revision's window pairs once per `rollout.interval` while
`contract.afterPromotion` is set, except while a kill switch holds users off the model (there is no
user traffic to judge) or a rollback moves them (the watched revision is changing).
"""

from __future__ import annotations

from datetime import datetime

from ballast.analysis.watch import run_watch
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import BurnReading, ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.shell.contract_checks import NO_PROVIDER
from ballast.shell.side_checks import Key, SideChecks
from ballast.workloads import render


def watched(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    return (
        spec.contract.after_promotion is not None
        and status.stable_revision is not None
        and status.after_promotion.rollback is None
        and not (status.kill_switch.sources or status.kill_switch.engaged)
    )


class BurnWatch(SideChecks[BurnReading]):
    def due(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
        return watched(spec, status)

    async def run(
        self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
    ) -> BurnReading:
        stable = status.stable_revision
        watch = spec.contract.after_promotion
        assert stable is not None
        assert watch is not None
        if self.provider is None:
            return BurnReading(at=format_time(now), revision=stable, objective=watch.objective, target=watch.target,
                               verdict="Error", reason=NO_PROVIDER)  # fmt: skip
        service = render.workload_name(key[1], stable)
        return await run_watch(self.provider, spec, key[0], key[1], stable, service, now)
