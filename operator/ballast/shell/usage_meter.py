"""Budget use measured beside the reconcile, like contract checks: a slow Prometheus never delays a kill switch.

Every ModelDeployment with `spec.budgets` is measured once per `rollout.interval`, whatever its
phase (spend does not stop at promotion). The last measurement stays in memory and is handed to
every reconcile, which writes it into status; a new one asks for a reconcile. Unlike a check's
verdict it is never dropped once written: each reconcile prices the latest use. Memory only: a
restarted or newly leading operator simply measures again.
"""

from __future__ import annotations

from datetime import datetime

from ballast.analysis.usage import measure
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.rollout.cost import Usage
from ballast.shell.contract_checks import NO_PROVIDER
from ballast.shell.side_checks import Key, SideChecks
from ballast.workloads import render


class UsageMeter(SideChecks[Usage]):
    def due(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
        return spec.budgets is not None and bool(status.revisions)

    def usage(self, key: Key) -> Usage | None:
        """The latest measurement (kept until the deployment stops being measured)."""
        return self.verdict(key)

    async def run(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> Usage:
        assert spec.budgets is not None
        if self.provider is None:
            return Usage(format_time(now), spec.budgets.window, error=NO_PROVIDER)
        services = {r.name: render.workload_name(key[1], r.name) for r in status.revisions}
        return await measure(self.provider, spec, key[0], key[1], services, now)
