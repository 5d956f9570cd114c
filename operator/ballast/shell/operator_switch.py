"""The KillSwitch the burn-rate watch asks for: created once, owned by the ModelDeployment.

The decision core writes the switch it wants into `status.afterPromotion.switch` first; this
creates the object until the watch sees it engaged. From then on only a person deleting it
releases it (the core notices it gone and resumes the watch), so it is never created twice for
one breach. A create that fails is retried by the next reconcile, and an object of that name
already there counts as created.
"""

from __future__ import annotations

import logging
from typing import Any

from ballast import API_VERSION
from ballast.api.status import ModelDeploymentStatus
from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import KILL_SWITCHES
from ballast.shell.cluster_view import ClusterView
from ballast.workloads import render

log = logging.getLogger("ballast.shell.operator_switch")
Manifest = dict[str, Any]

ENGAGED_BY_LABEL = "ballast.dev/engaged-by"
ENGAGED_BY_CONTRACT = "contract"


def switch_manifest(md: Manifest, name: str, reason: str) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "KillSwitch",
        "metadata": {
            "name": name,
            "namespace": md["metadata"]["namespace"],
            "labels": {
                **render.MANAGED_BY,
                ENGAGED_BY_LABEL: ENGAGED_BY_CONTRACT,
                render.DEPLOYMENT_LABEL: md["metadata"]["name"],
            },
            "ownerReferences": [render.owner_reference(md)],
        },
        # No requestedBy: admission lets only the writer name themselves, and status then names the writing
        # field manager (ballast); the label says which part of Ballast engaged it.
        "spec": {"modelDeployments": [md["metadata"]["name"]], "reason": reason},
    }


async def apply_operator_switch(api: KubeApi, md: Manifest, status: ModelDeploymentStatus, view: ClusterView) -> None:
    wanted = status.after_promotion.switch
    namespace = md["metadata"]["namespace"]
    if wanted is None or wanted.engaged or view.switch(("KillSwitch", namespace, wanted.name)) is not None:
        return
    try:
        await api.create(KILL_SWITCHES, namespace, switch_manifest(md, wanted.name, wanted.reason))
    except ApiError as error:
        if error.status != 409:  # AlreadyExists: created by an earlier reconcile whose watch event is on its way
            raise
