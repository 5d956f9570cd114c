"""kopf entry points for kill switches and what they depend on: each asks for reconciles, nothing more.

A switch acts on its watch event, never on a timer: the event reconciles every ModelDeployment it
selects. Namespace label changes re-evaluate ClusterKillSwitch namespace selectors; ReferenceGrant
and Service events reconcile the deployments that route (or could route) to them.
"""

from __future__ import annotations

from typing import Any

import kopf

from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.reconciler import Reconciler
from ballast.workloads.render import DEPLOYMENT_LABEL


def _dispatcher(memo: Any) -> KillSwitchDispatcher:
    dispatcher: KillSwitchDispatcher = memo["switches"]
    return dispatcher


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


@kopf.on.event("ballast.dev", "v1alpha1", "killswitches")
@kopf.on.event("ballast.dev", "v1alpha1", "clusterkillswitches")
async def switch_changed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _dispatcher(memo).switch_changed(type, body)


@kopf.on.event("", "v1", "namespaces")
async def namespace_changed(name: str, memo: Any, **_: Any) -> None:
    _dispatcher(memo).namespace_changed(name)


@kopf.on.event("gateway.networking.k8s.io", "v1beta1", "referencegrants")
async def grant_changed(namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        _reconciler(memo).grants_changed(namespace)


@kopf.on.event("", "v1", "services")
async def service_changed(namespace: str | None, name: str, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    """A fallback Service, or one holding a name a deployment derives, appeared, changed or vanished."""
    if namespace is not None:
        _reconciler(memo).service_changed(namespace, name, labels.get(DEPLOYMENT_LABEL))
