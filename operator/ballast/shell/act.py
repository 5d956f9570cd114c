"""Act: make the children match the status the decision core wrote.

One Deployment and Service (and an optional HorizontalPodAutoscaler) per revision, the reject
responder while the spec has a reject fallback, the route through the deployment's router, and
the workloads of revisions the core dropped removed. Each write is skipped when the observed child
is what this process last wrote and nobody changed it since.
"""

from __future__ import annotations

import logging
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_inputs
from ballast.api.status import ModelDeploymentStatus
from ballast.kube.client import KubeApi
from ballast.kube.resources import BUDGETS, CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, SERVICES
from ballast.shell.children import ChildSet
from ballast.shell.observe import revision_of
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


async def apply_workloads(
    api: KubeApi,
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    desired: str,
    templates: dict[str, Any],
    children: ChildSet,
) -> None:
    """One workload per revision in status; the template of a new revision recorded first; the rest removed."""
    namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
    if desired not in templates:
        record = render.controller_revision(md, desired, revision_inputs(md["spec"]), len(templates) + 1)
        await api.apply(CONTROLLER_REVISIONS, record)
        templates[desired] = record["data"]
    kept = {r.name for r in status.revisions}
    for revision in status.revisions:
        inputs = templates.get(revision.name)
        if inputs is None:
            log.warning(
                "revision %s of %s/%s has no recorded template; cannot render it", revision.name, namespace, name
            )
            continue
        template = render.pod_template(inputs, spec)
        workload = render.workload_name(name, revision.name)
        await api.apply(
            DEPLOYMENTS, render.deployment(md, spec, revision.name, revision.role, revision.replicas, template),
            children.named(DEPLOYMENTS, workload),
        )  # fmt: skip
        await api.apply(
            SERVICES, render.service(md, spec, revision.name, revision.role), children.named(SERVICES, workload)
        )
        scaler = render.autoscaler(md, spec, revision.name)
        if scaler is not None and revision.role in ("stable", "canary"):
            await api.apply(HPAS, scaler)
        elif spec.model.autoscaling is not None:
            await api.delete(HPAS, namespace, render.workload_name(name, revision.name))
    for deployment in children.deployments:
        revision_name = revision_of(deployment)
        if revision_name is not None and revision_name not in kept:
            workload = render.workload_name(name, revision_name)
            for resource in (DEPLOYMENTS, SERVICES, HPAS, CONTROLLER_REVISIONS):
                await api.delete(resource, namespace, workload)


async def apply_responder(
    api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, children: ChildSet, image: str
) -> None:
    """The reject responder runs while the spec has a reject fallback, so a kill switch finds it warm; with two
    or more replicas a PodDisruptionBudget keeps one serving through node drains."""
    reject = next((f.reject for f in spec.fallbacks if f.reject is not None), None)
    responder = responder_name(md["metadata"]["name"])
    budget = responder_disruption_budget(md, reject) if reject is not None else None
    if reject is not None:
        deployment = responder_deployment(md, reject, image)
        await api.apply(DEPLOYMENTS, deployment, children.named(DEPLOYMENTS, responder))
        await api.apply(SERVICES, responder_service(md), children.named(SERVICES, responder))
        if budget is not None:
            await api.apply(BUDGETS, budget, children.named(BUDGETS, responder))
    unwanted = [
        resource
        for resource, wanted in ((DEPLOYMENTS, reject), (SERVICES, reject), (BUDGETS, budget))
        if wanted is None and children.named(resource, responder)
    ]
    for resource in unwanted:
        await api.delete(resource, md["metadata"]["namespace"], responder)


async def apply_route(
    api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, children: ChildSet
) -> None:
    """The route carries the weights in status; the other router's objects, left by a router change, go."""
    backends = backends_for(md, spec, status)
    if backends is None:
        return
    router = router_for(spec.traffic.router)
    await router.reconcile(api, md, spec, backends, children.named(*router.owned(md)))
    other = router_for("service" if spec.traffic.router == "gateway-api" else "gateway-api")
    if spec.traffic.route_ref is None and children.named(*other.owned(md)) is not None:
        await other.finalize(api, md, spec)
