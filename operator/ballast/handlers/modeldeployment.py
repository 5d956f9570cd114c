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
from ballast.handlers.indexes import CHILD_INDEX_NAMES, CHILD_LABELS, INDEX_NAMES
from ballast.kube.client import KubeApi
from ballast.kube.resources import BUDGETS, HTTP_ROUTES, SERVICES
from ballast.shell.children import Children
from ballast.shell.cluster_view import ClusterView
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.reconciler import Reconciler
from ballast.traffic.acceptance import parents_digest
from ballast.workloads.render import DEPLOYMENT_LABEL
from ballast.workloads.responder_manifests import DEFAULT_IMAGE

PROMETHEUS_URL_VARIABLE = "BALLAST_PROMETHEUS_URL"
RESPONDER_IMAGE_VARIABLE = "BALLAST_RESPONDER_IMAGE"


@kopf.on.startup()
async def start_reconciler(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf hands every index to startup handlers as a live view, filled before any event handler runs.
    view = ClusterView(*(kwargs[name] for name in INDEX_NAMES))
    api = KubeApi.from_environment()
    url = os.environ.get(PROMETHEUS_URL_VARIABLE)
    image = os.environ.get(RESPONDER_IMAGE_VARIABLE) or DEFAULT_IMAGE
    children = Children(*(kwargs[name] for name in CHILD_INDEX_NAMES))
    reconciler = Reconciler(
        api, PrometheusProvider(url) if url else None, view=view, responder_image=image, children=children
    )
    memo["api"] = api
    memo["reconciler"] = reconciler
    memo["switches"] = KillSwitchDispatcher(api, view, reconciler)
    memo["ticker"] = asyncio.get_running_loop().create_task(reconciler.tick_forever())


@kopf.on.cleanup()
async def stop_reconciler(memo: kopf.Memo, **_: Any) -> None:
    memo["ticker"].cancel()
    await memo["reconciler"].stop()
    await memo["switches"].runner.stop()
    await memo["api"].close()


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


@kopf.on.event("ballast.dev", "v1alpha1", "modeldeployments")
async def model_deployment_changed(
    type: str, namespace: str | None, name: str, meta: kopf.Meta, memo: Any, **_: Any
) -> None:
    assert namespace is not None  # ModelDeployments are namespaced
    if type == "DELETED":
        _reconciler(memo).forget(namespace, name)
    else:
        _reconciler(memo).changed(namespace, name, str(meta.get("resourceVersion")))
    dispatcher: KillSwitchDispatcher = memo["switches"]
    dispatcher.deployment_changed(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
async def child_changed(labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any) -> None:
    """A workload changed (readiness, restarts) or vanished (a deleted Deployment is recreated)."""
    if namespace is not None:
        _reconciler(memo).notify(namespace, labels[DEPLOYMENT_LABEL])


WRITTEN_KINDS = {"HTTPRoute": HTTP_ROUTES, "Service": SERVICES, "PodDisruptionBudget": BUDGETS}


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=CHILD_LABELS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
async def routing_changed(
    type: str | None, body: kopf.Body, labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A Service, route or disruption budget changed by someone else, or vanished; the echo of the operator's
    own write changes nothing the operator owns (a Gateway's report on a route is `route_reported`'s)."""
    reconciler = _reconciler(memo)
    resource = WRITTEN_KINDS[body["kind"]]
    if namespace is not None and (type == "DELETED" or not reconciler.api.wrote(resource, dict(body))):
        reconciler.notify(namespace, labels[DEPLOYMENT_LABEL])


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes")
async def route_reported(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A Gateway reported on a route (Accepted, ResolvedRefs), owned or named by a routeRef: the deployments it
    carries re-read what the Gateway accepted."""
    if namespace is not None:
        _reconciler(memo).route_reported(namespace, name, parents_digest(body))
