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
from ballast.api.types import parse_duration
from ballast.handlers.indexes import CHILD_INDEX_NAMES, CHILD_LABELS, INDEX_NAMES, REFERENCE_INDEX_NAMES
from ballast.handlers.leader import election_config, start_election, stop_election
from ballast.hooks import OutboundPolicy, ServiceAccountTokens, WebhookCaller
from ballast.kube.client import KubeApi
from ballast.kube.resources import WRITTEN_KINDS
from ballast.observability import executor, metrics
from ballast.shell.children import Children
from ballast.shell.cluster_view import ClusterView
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.leader import user_agent
from ballast.shell.provider_probe import probe_forever
from ballast.shell.reconciler import Reconciler
from ballast.shell.references import ReferenceView
from ballast.traffic.acceptance import parents_digest
from ballast.workloads.render import DEPLOYMENT_LABEL
from ballast.workloads.responder_manifests import DEFAULT_IMAGE

PROMETHEUS_URL_VARIABLE = "BALLAST_PROMETHEUS_URL"
PROMETHEUS_TIMEOUT_VARIABLE = "BALLAST_PROMETHEUS_TIMEOUT"
RESPONDER_IMAGE_VARIABLE = "BALLAST_RESPONDER_IMAGE"
WEBHOOK_ALLOW_HOSTS_VARIABLE = "BALLAST_WEBHOOK_ALLOW_HOSTS"


@kopf.on.startup()
async def start_reconciler(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf hands every index to startup handlers as a live view, filled before any event handler runs.
    executor.install(asyncio.get_running_loop())
    view = ClusterView(*(kwargs[name] for name in INDEX_NAMES))
    api = KubeApi.from_environment(user_agent=user_agent(election_config(memo).identity))
    url = os.environ.get(PROMETHEUS_URL_VARIABLE)
    timeout = parse_duration(os.environ.get(PROMETHEUS_TIMEOUT_VARIABLE) or "10s").total_seconds()
    image = os.environ.get(RESPONDER_IMAGE_VARIABLE) or DEFAULT_IMAGE
    children = Children(*(kwargs[name] for name in CHILD_INDEX_NAMES))
    references = ReferenceView(*(kwargs[name] for name in REFERENCE_INDEX_NAMES))
    reconciler = Reconciler(
        api,
        PrometheusProvider(url, timeout) if url else None,
        view=view,
        references=references,
        responder_image=image,
        children=children,
        webhooks=WebhookCaller(
            OutboundPolicy.allowing(os.environ.get(WEBHOOK_ALLOW_HOSTS_VARIABLE, "").split(",")),
            ServiceAccountTokens(api),
        ),
    )
    memo["api"] = api
    memo["reconciler"] = reconciler
    memo["switches"] = KillSwitchDispatcher(api, view, reconciler)
    # Only the leader reconciles: every replica starts as a standby, and campaigns once its indexes are filled.
    await start_election(memo, api, reconciler, memo["switches"], view)
    loop = asyncio.get_running_loop()
    metrics.reconcile_lag.set_function(reconciler.runner.oldest_wait)
    memo["ticker"] = loop.create_task(reconciler.tick_forever())
    provider = reconciler.checks.provider
    memo["prober"] = loop.create_task(probe_forever(provider, "prometheus")) if provider is not None else None


@kopf.on.cleanup()
async def stop_reconciler(memo: kopf.Memo, **_: Any) -> None:
    memo["ticker"].cancel()
    if memo["prober"] is not None:
        memo["prober"].cancel()
    await stop_election(memo)  # stops every reconcile, then hands the lease over
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
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.forget(namespace, name)
        # A reconcile in flight may still remember it; one more, after it, finds it gone and forgets again.
        reconciler.notify(namespace, name)
    else:
        reconciler.changed(namespace, name, str(meta.get("resourceVersion")))
    dispatcher: KillSwitchDispatcher = memo["switches"]
    dispatcher.deployment_changed(namespace, name)


def _forget_if_gone(reconciler: Reconciler, type: str | None, body: kopf.Body, namespace: str) -> None:
    """A child deleted by anyone (garbage collection with its ModelDeployment too): drop what was written to it."""
    resource = WRITTEN_KINDS.get(str(body.get("kind")))
    if type == "DELETED" and resource is not None:
        reconciler.api.forget(resource, namespace, body["metadata"]["name"])


# Children whose changes other than deletion change nothing the operator owns (an autoscaler's status, each sync).
DELETION_ONLY = ("ControllerRevision", "HorizontalPodAutoscaler")


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "controllerrevisions", labels=CHILD_LABELS)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=CHILD_LABELS)
async def child_changed(
    type: str | None, body: kopf.Body, labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A workload changed (readiness, restarts) or a child vanished (it is recreated)."""
    if namespace is None or (type != "DELETED" and body.get("kind") in DELETION_ONLY):
        return
    _forget_if_gone(_reconciler(memo), type, body, namespace)
    _reconciler(memo).notify(namespace, labels[DEPLOYMENT_LABEL])


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=CHILD_LABELS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
async def routing_changed(
    type: str | None, body: kopf.Body, labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any
) -> None:
    """A Service, route or disruption budget changed by someone else, or vanished; the echo of the operator's
    own write changes nothing the operator owns (a Gateway's report on a route is `route_changed`'s)."""
    reconciler = _reconciler(memo)
    resource = WRITTEN_KINDS[body["kind"]]
    if namespace is None:
        return
    _forget_if_gone(reconciler, type, body, namespace)
    if type == "DELETED" or not reconciler.api.wrote(resource, dict(body)):
        reconciler.notify(namespace, labels[DEPLOYMENT_LABEL])


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes")
async def route_changed(
    body: kopf.Body, labels: kopf.Labels, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Any route: a Gateway's new report on it (Accepted, ResolvedRefs) has the deployments it carries re-read
    what the Gateway accepted. One that is not a child: a routeRef route opting in or out, or one holding a
    route's name."""
    if namespace is None:
        return
    reconciler = _reconciler(memo)
    reconciler.route_reported(namespace, name, parents_digest(body))
    if DEPLOYMENT_LABEL not in labels:
        reconciler.route_changed(namespace, name)
