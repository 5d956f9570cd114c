"""What holding the Lease means for the shell: only the leader reconciles and writes.

Every replica runs kopf's watches and indexes, so a standby's memory of the cluster is as warm as the
leader's; only the leader's reconciles and switch-status writes run (`shell/leader.py` fences the
writes themselves). A take-over reconciles every ModelDeployment and every switch the indexes know,
at once: a KillSwitch created while nobody led acts on the take-over, not on a later event. A replica
campaigns only once kopf has filled its indexes, so a new leader never decides on a half-read cluster
(a switch it has not read yet is not a released switch).
"""

from __future__ import annotations

import asyncio
import logging

from ballast.observability import metrics
from ballast.shell.cluster_view import ClusterView
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.leader import LeaderElector
from ballast.shell.reconciler import Reconciler

log = logging.getLogger("ballast.leadership")


class Leadership:
    def __init__(
        self, elector: LeaderElector, reconciler: Reconciler, dispatcher: KillSwitchDispatcher, view: ClusterView
    ) -> None:
        self.elector = elector
        self.reconciler = reconciler
        self.dispatcher = dispatcher
        self.view = view
        self.indexed = asyncio.Event()

    def indexes_filled(self) -> None:
        """kopf has read every watched kind once: a take-over now sees the whole cluster."""
        self.indexed.set()

    async def campaign(self) -> None:
        await self.indexed.wait()
        await self.elector.run(self.take_over, self.stand_by)

    async def stand_by(self) -> None:
        """Act on nothing: no reconcile, no contract check, no switch status; the indexes stay warm."""
        metrics.leader.set(0)
        metrics.forget_all()
        self.reconciler.checks.forget_all()
        self.reconciler.usage.forget_all()
        self.reconciler.watch.forget_all()
        self.reconciler.gates.forget_all()
        await self.reconciler.runner.pause()
        await self.dispatcher.runner.pause()

    async def take_over(self) -> None:
        """Reconcile everything known, now: status says where each rollout stands."""
        self.reconciler.runner.resume()
        self.dispatcher.runner.resume()
        metrics.leader.set(1)
        deployments, switches = self.view.every_deployment(), self.view.every_switch()
        for entry in deployments:
            self.reconciler.notify(entry.namespace, entry.name)
        for switch in switches:
            self.dispatcher.runner.notify(switch.key)
        log.info("leading: reconciling %d ModelDeployments and %d kill switches", len(deployments), len(switches))

    async def stop(self) -> None:
        """Graceful shutdown: stop acting, then hand the lease over so a standby takes over at once."""
        await self.stand_by()
        await self.elector.release()
