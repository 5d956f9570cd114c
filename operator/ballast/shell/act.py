"""Act: make the children match the status the decision core wrote.

One Deployment and Service (and an optional HorizontalPodAutoscaler) per revision, the reject
responder (and its PodDisruptionBudget) while the spec has a reject fallback, the route through the
deployment's router, and the workloads of revisions the core dropped removed. Each write is skipped
when the observed child is what this process last wrote and nobody changed it since. An object of a
child's name that is not this deployment's (`Claims`) is never written, and only the deployment's
own objects are deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_inputs
from ballast.api.status import ModelDeploymentStatus
from ballast.kube.client import KubeApi
from ballast.kube.resources import BUDGETS, CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, SERVICES, Resource
from ballast.shell.children import ChildSet
from ballast.shell.observe import Observed, revision_of
from ballast.shell.ownership import is_ours
from ballast.traffic.backends import backends_for
from ballast.traffic.routers import router_for
from ballast.workloads import render
from ballast.workloads.responder_manifests import (
    responder_deployment,
    responder_disruption_budget,
    responder_name,
    responder_service,
)

log = logging.getLogger("ballast.act")
Manifest = dict[str, Any]


async def _apply(api: KubeApi, seen: Observed, children: ChildSet, resource: Resource, body: Manifest) -> None:
    """Apply a child unless its name belongs to someone else (then it stays untouched, and status says so)."""
    name = body["metadata"]["name"]
    if seen.claims.writable(resource, name):
        await api.apply(resource, body, seen.claims.observed(children, resource, name))


async def _delete_own(api: KubeApi, md: Manifest, children: ChildSet, resource: Resource, name: str) -> None:
    if is_ours(children.named(resource, name), md):
        await api.delete(resource, md["metadata"]["namespace"], name)


async def apply_workloads(
    api: KubeApi,
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    desired: str,
    templates: dict[str, Any],
    children: ChildSet,
    seen: Observed,
) -> None:
    """One workload per revision in status; the template of a new revision recorded first; the rest removed."""
    namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
    record_name = render.workload_name(name, desired)
    runs = any(r.name == desired for r in status.revisions)
    if runs and desired not in templates and seen.claims.writable(CONTROLLER_REVISIONS, record_name):
        record = render.controller_revision(md, desired, revision_inputs(md["spec"]), len(templates) + 1)
        await _apply(api, seen, children, CONTROLLER_REVISIONS, record)
        templates[desired] = record["data"]
    kept = {r.name for r in status.revisions}
    for revision in status.revisions:
        inputs = templates.get(revision.name)
        if inputs is None:
            log.warning(
                "revision %s of %s/%s has no recorded template; cannot render it", revision.name, namespace, name
            )
            continue
        deployment = render.deployment(md, spec, revision.name, revision.role, revision.replicas, inputs)
        await _apply(api, seen, children, DEPLOYMENTS, deployment)
        await _apply(api, seen, children, SERVICES, render.service(md, spec, revision.name, revision.role, inputs))
        scaler = render.autoscaler(md, spec, revision.name, inputs)
        if scaler is not None and revision.role in ("stable", "canary"):
            await _apply(api, seen, children, HPAS, scaler)
        else:  # a revision that serves nobody is not scaled up by load meant for the others
            await _delete_own(api, md, children, HPAS, render.workload_name(name, revision.name))
    for child in children.deployments + children.revisions:
        revision_name = revision_of(child)
        if revision_name is not None and revision_name not in kept:
            workload = render.workload_name(name, revision_name)
            for resource in (DEPLOYMENTS, SERVICES, HPAS, CONTROLLER_REVISIONS):
                await _delete_own(api, md, children, resource, workload)


async def apply_responder(
    api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, children: ChildSet, image: str, seen: Observed
) -> None:
    """The reject responder runs while the spec has a reject fallback, so a kill switch finds it warm; with two
    or more replicas a PodDisruptionBudget keeps one serving through node drains."""
    reject = next((f.reject for f in spec.fallbacks if f.reject is not None), None)
    responder = responder_name(md["metadata"]["name"])
    budget = responder_disruption_budget(md, reject) if reject is not None else None
    if reject is not None:
        await _apply(api, seen, children, DEPLOYMENTS, responder_deployment(md, reject, image))
        await _apply(api, seen, children, SERVICES, responder_service(md))
    if budget is not None:
        await _apply(api, seen, children, BUDGETS, budget)
    for resource, wanted in ((DEPLOYMENTS, reject), (SERVICES, reject), (BUDGETS, budget)):
        if wanted is None:
            await _delete_own(api, md, children, resource, responder)


async def apply_route(
    api: KubeApi,
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    templates: dict[str, Any],
    children: ChildSet,
    seen: Observed,
) -> None:
    """The route carries the weights in status; the other router's objects, left by a router change, go.
    A route Ballast may not write (`route_refused`) is left exactly as it is."""
    backends = backends_for(md, spec, status, templates)
    if backends is None or seen.observations.route_refused is not None:
        return
    router = router_for(spec.traffic.router)
    owned = seen.claims.observed(children, *router.owned(md))
    current = seen.route if spec.traffic.route_ref is not None else owned
    await router.reconcile(api, md, spec, backends, current)
    other = router_for("service" if spec.traffic.router == "gateway-api" else "gateway-api")
    if spec.traffic.route_ref is None and is_ours(children.named(*other.owned(md)), md):
        await other.finalize(api, md, spec)
