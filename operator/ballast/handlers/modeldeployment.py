"""kopf entry points for ModelDeployments and their children: each only asks for a reconcile.

Raw event handlers (`kopf.on.event`) keep no state in the objects and add no finalizer, so deleting
a ModelDeployment never waits for the operator: its children go with it through ownerReferences.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import kopf

from ballast.analysis.providers.prometheus import PrometheusProvider
from ballast.handlers.indexes import INDEX_NAMES
from ballast.kubeapi import KubeApi
from ballast.reconciler import Reconciler
from ballast.switch_writer import SwitchStatusWriter
from ballast.switchboard import Switchboard
from ballast.workloads.render import DEPLOYMENT_LABEL
from ballast.workloads.responder import DEFAULT_IMAGE

CHILD_LABELS = {DEPLOYMENT_LABEL: kopf.PRESENT}
PROMETHEUS_URL_VARIABLE = "BALLAST_PROMETHEUS_URL"
RESPONDER_IMAGE_VARIABLE = "BALLAST_RESPONDER_IMAGE"


@kopf.on.startup()
async def start_reconciler(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf hands every index to startup handlers as a live view, filled before any event handler runs.
    board = Switchboard(*(kwargs[name] for name in INDEX_NAMES))
    api = KubeApi.from_environment()
    url = os.environ.get(PROMETHEUS_URL_VARIABLE)
    image = os.environ.get(RESPONDER_IMAGE_VARIABLE) or DEFAULT_IMAGE
    reconciler = Reconciler(api, PrometheusProvider(url) if url else None, switchboard=board, responder_image=image)
    memo["api"] = api
    memo["reconciler"] = reconciler
    memo["switches"] = SwitchStatusWriter(api, board, reconciler)
    memo["ticker"] = asyncio.get_running_loop().create_task(reconciler.tick_forever())


@kopf.on.cleanup()
async def stop_reconciler(memo: kopf.Memo, **_: Any) -> None:
    memo["ticker"].cancel()
    await memo["api"].close()


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


@kopf.on.event("ballast.dev", "v1alpha1", "modeldeployments")
async def model_deployment_changed(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    assert namespace is not None  # ModelDeployments are namespaced
    if type == "DELETED":
        _reconciler(memo).forget(namespace, name)
    else:
        _reconciler(memo).notify(namespace, name)
    writer: SwitchStatusWriter = memo["switches"]
    writer.deployment_changed(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=CHILD_LABELS)
async def child_changed(labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any) -> None:
    """A child changed or vanished (a deleted route or Deployment is recreated by the reconcile)."""
    if namespace is not None:
        _reconciler(memo).notify(namespace, labels[DEPLOYMENT_LABEL])
