"""kopf entry points of leader election: start the campaign, tell it when the indexes are filled, report the role.

Every replica watches and indexes; `shell/leadership.py` decides which one acts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from ballast.kube.client import KubeApi
from ballast.shell.cluster_view import ClusterView
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.leader import ElectionConfig, LeaderElector, default_identity, user_agent
from ballast.shell.leadership import Leadership
from ballast.shell.reconciler import Reconciler


def election_config(memo: Any) -> ElectionConfig:
    """What `ballast run` put in the memo (its flags), else this process's defaults."""
    config: ElectionConfig | None = memo.get("election")
    return config or ElectionConfig(default_identity())


async def start_election(
    memo: Any, api: KubeApi, reconciler: Reconciler, dispatcher: KillSwitchDispatcher, view: ClusterView
) -> None:
    """Start as a standby with `api`'s writes fenced, and campaign once the indexes are filled."""
    config = election_config(memo)
    # Lease calls have their own connections: a renewal never queues behind reconcile writes.
    leases = KubeApi.from_environment(timeout=config.timings.retry_period, user_agent=user_agent(config.identity))
    elector = LeaderElector(leases, config)
    api.write_fence = elector.fence
    leadership = Leadership(elector, reconciler, dispatcher, view)
    await leadership.stand_by()
    memo["leases"] = leases
    memo["leadership"] = leadership
    memo["campaign"] = asyncio.get_running_loop().create_task(leadership.campaign())


async def stop_election(memo: Any) -> None:
    memo["campaign"].cancel()
    await memo["leadership"].stop()
    await memo["leases"].close()


@kopf.on.event("", "v1", "namespaces")
async def indexes_filled(memo: Any, **_: Any) -> None:
    """kopf runs no event handler before every index holds its initial listing, and namespaces always exist:
    the first namespace event says a take-over would see the whole cluster."""
    leadership: Leadership = memo["leadership"]
    leadership.indexes_filled()


@kopf.on.probe(id="leadership")
def leadership_report(memo: Any, **_: Any) -> dict[str, Any]:
    """Readiness: `leader` or `standby`, and who holds the lease (kopf refreshes probes at most every 10 s)."""
    leadership: Leadership = memo["leadership"]
    return leadership.elector.report()
