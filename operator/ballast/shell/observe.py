"""Observe: gather the facts the decision core is given (`rollout.observations.Observations`).

Everything comes from the ModelDeployment and the in-memory indexes, except a Gateway's supported
features (read only when this decision could write a mirror), a routeRef route (read before each
patch anyway), and a child Ballast has not seen yet (read once, so an object of its name that
Ballast did not create is never adopted: `ownership.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ballast.api.annotations import (
    ABORT_ANNOTATION,
    APPROVED_BY_ANNOTATION,
    PAUSE_ANNOTATION,
    PROMOTE_ANNOTATION,
)
from ballast.api.modeldeployment import Fallback, ModelDeploymentSpec
from ballast.api.revision import revision_inputs
from ballast.api.status import Analysis, BurnReading, ModelDeploymentStatus
from ballast.kube.client import KubeApi
from ballast.kube.resources import DEPLOYMENTS, HTTP_ROUTES, SERVICES, Resource
from ballast.rollout.cost import Usage
from ballast.rollout.observations import (
    Commands,
    FallbackObservation,
    Observations,
    Refusal,
    RevisionObservation,
)
from ballast.shell.children import ChildSet
from ballast.shell.cluster_view import ClusterView
from ballast.shell.ownership import Claims, Owner, claims_of
from ballast.shell.references import ReferenceView, fallback_service_problem, route_ref_refusal
from ballast.traffic.routers import router_for
from ballast.workloads import render
from ballast.workloads.responder_manifests import RESPONDER_LABEL, responder_name

Manifest = dict[str, Any]


def commands_of(md: Manifest) -> Commands:
    annotations = md["metadata"].get("annotations") or {}
    return Commands(
        promote=annotations.get(PROMOTE_ANNOTATION),
        abort=annotations.get(ABORT_ANNOTATION),
        paused=annotations.get(PAUSE_ANNOTATION, "").lower() == "true",
        approved_by=annotations.get(APPROVED_BY_ANNOTATION),
    )


def available(deployment: Manifest) -> bool:
    status = deployment.get("status") or {}
    fresh = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return fresh and conditions.get("Available") == "True" and status.get("readyReplicas", 0) > 0


def pods_refused(deployment: Manifest) -> str:
    """Why pods of this Deployment cannot be created (its ReplicaSet's FailedCreate, surfaced by the
    Deployment controller as ReplicaFailure), or ""."""
    for condition in (deployment.get("status") or {}).get("conditions", []):
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "ReplicaFailure")
    return ""


def revision_of(child: Manifest) -> str | None:
    """The revision a child belongs to; None for the deployment's other children (the reject responder)."""
    revision: str | None = (child["metadata"].get("labels") or {}).get(render.REVISION_LABEL)
    return revision


def unschedulable_reason(pod: Manifest) -> str | None:
    """The scheduler's message for a pod it cannot place (PodScheduled False, reason Unschedulable), else None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        placed = (condition.get("type"), condition.get("status"), condition.get("reason"))
        if placed == ("PodScheduled", "False", "Unschedulable"):
            return str(condition.get("message") or "Unschedulable")
    return None


def observe_revisions(
    deployments: list[Manifest],
    pods: list[Manifest],
    usable: Callable[[str], bool] = lambda _: True,
    gpus: Mapping[str, int] | None = None,
) -> dict[str, RevisionObservation]:
    """What each revision's workload reports; a revision whose workload is not all Ballast's (`usable`) is absent.
    `gpus`: GPUs one pod of each revision requests (from its recorded template)."""
    restarts: dict[str, int] = {}
    unschedulable: dict[str, int] = {}
    reasons: dict[str, str] = {}
    for pod in pods:
        revision = revision_of(pod)
        counts = [c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []]
        if revision:
            restarts[revision] = max(restarts.get(revision, 0), *counts, 0)
            reason = unschedulable_reason(pod)
            if reason is not None:
                unschedulable[revision] = unschedulable.get(revision, 0) + 1
                reasons[revision] = reason
    found = {}
    for deployment in deployments:
        revision = revision_of(deployment)
        if revision is None or not usable(revision):
            continue
        found[revision] = RevisionObservation(
            exists=True,
            workload=deployment["metadata"]["name"],
            available=available(deployment),
            ready_replicas=int((deployment.get("status") or {}).get("readyReplicas", 0)),
            restarts=restarts.get(revision, 0),
            refused=pods_refused(deployment),
            unschedulable=unschedulable.get(revision, 0),
            unschedulable_reason=reasons.get(revision, ""),
            gpus_per_pod=(gpus or {}).get(revision, 0),
        )
    return found


def fallback_service(md: Manifest, fallback: Fallback) -> tuple[str, str, int] | None:
    """(namespace, name, port) of a Service fallback."""
    if fallback.service is None:
        return None
    ref = fallback.service
    return ref.namespace or md["metadata"]["namespace"], ref.name, ref.port


def _service_problem(
    view: ClusterView, references: ReferenceView, md: Manifest, namespace: str, name: str, port: int
) -> str:
    own = md["metadata"]["namespace"]
    problem = view.grant_problem(own, namespace, name) if namespace != own else ""
    if problem:
        return problem
    ports = view.service_ports(namespace, name)
    if ports is None:
        return f"Service {namespace}/{name} not found"
    if port not in ports:
        return f"Service {namespace}/{name} has no port {port} (it has {', '.join(map(str, ports)) or 'none'})"
    return fallback_service_problem(references, md, namespace, name)


def _responder_problem(md: Manifest, deployments: list[Manifest], claims: Claims) -> str:
    responder = responder_name(md["metadata"]["name"])
    for resource in (DEPLOYMENTS, SERVICES):
        if not claims.writable(resource, responder):
            return f"the responder's {resource.kind} {responder} {claims.problem(resource, responder)}"
    # Usable while one pod serves: one of two restarting must not move users (or hold a switch).
    ready = any(
        d["metadata"]["name"] == responder
        and RESPONDER_LABEL in d["metadata"].get("labels", {})
        and int((d.get("status") or {}).get("readyReplicas", 0)) > 0
        for d in deployments
    )
    return "" if ready else f"the responder Deployment {responder} has no ready pod"


def observe_fallbacks(
    view: ClusterView,
    references: ReferenceView,
    md: Manifest,
    spec: ModelDeploymentSpec,
    deployments: list[Manifest],
    claims: Claims,
) -> dict[str, FallbackObservation]:
    """Whether each Service and reject fallback could take users now (previousRevision is the core's to judge)."""
    found: dict[str, FallbackObservation] = {}
    for fallback in spec.fallbacks:
        service = fallback_service(md, fallback)
        if service is not None:
            problem = _service_problem(view, references, md, *service)
        elif fallback.reject is not None:
            problem = _responder_problem(md, deployments, claims)
        else:
            continue
        found[fallback.name] = FallbackObservation(usable=not problem, problem=problem)
    return found


def route_refusal(
    references: ReferenceView,
    md: Manifest,
    spec: ModelDeploymentSpec,
    serving: str,
    claims: Claims,
    route: Manifest | None,
) -> Refusal | None:
    """Why Ballast may not write the route (None when it may): it is not Ballast's, or it would send users to a
    Service that is not Ballast's (`serving`: the revision users get by default)."""
    ref = spec.traffic.route_ref
    if ref is not None:
        refused = route_ref_refusal(references, md, ref, route)
        if refused is not None:
            return refused
    else:
        resource, name = router_for(spec.traffic.router).owned(md)
        if not claims.writable(resource, name):
            return Refusal("NameTaken", f"the route, {resource.kind} {name}, {claims.problem(resource, name)}")
    workload = render.workload_name(md["metadata"]["name"], serving)
    if not claims.writable(SERVICES, workload):
        return Refusal(
            "NameTaken", f"the route would send users to Service {workload}, which {claims.problem(SERVICES, workload)}"
        )
    return None


def _may_mirror(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, switched: bool) -> bool:
    """Whether this decision may write a mirror (a canary before its first step with a shadow phase, or a
    switch capturing traffic): only then are the Gateways' features read."""
    shadow = spec.rollout.shadow is not None and status.canary_revision is not None and status.current_step is None
    return shadow or (switched and bool(spec.kill_switch and spec.kill_switch.capture_traffic))


@dataclass(frozen=True)
class Observed:
    """What the decision core is told, and what the act step needs of the same look."""

    observations: Observations
    claims: Claims  # the objects this reconcile may not write
    route: Manifest | None = None  # the routeRef route as read


async def observe(
    api: KubeApi,
    view: ClusterView,
    references: ReferenceView,
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    desired: str,
    children: ChildSet,
    analysis: Analysis | None,
    usage: Usage | None = None,
    burn: BurnReading | None = None,
) -> Observed:
    """Everything the decision core is told about one ModelDeployment."""
    metadata = md["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]

    def service_owner(service: str) -> tuple[bool, Owner | None]:
        facts = references.service(namespace, service)
        return facts is not None, facts.controller if facts else None

    async def lookup(resource: Resource, child: str) -> Manifest | None:
        return await api.get(resource, namespace, child)

    claims = await claims_of(md, spec, status, desired, children, service_owner, lookup)
    ref = spec.traffic.route_ref
    route = await api.get(HTTP_ROUTES, namespace, ref.name) if ref is not None else None
    switches = view.sources_for(namespace, name, metadata.get("labels") or {})
    mirror_supported = True
    if _may_mirror(spec, status, bool(switches)):
        mirror_supported = await router_for(spec.traffic.router).can_mirror(api, md, spec)

    def usable(revision: str) -> bool:
        workload = render.workload_name(name, revision)
        return claims.writable(DEPLOYMENTS, workload) and claims.writable(SERVICES, workload)

    templates = {revision_of(r): r.get("data") or {} for r in children.revisions}
    templates.setdefault(desired, revision_inputs(md["spec"]))
    gpus = {
        revision: render.gpus_per_pod(render.pod_template(inputs, spec))
        for revision, inputs in templates.items()
        if revision is not None and ("template" in inputs or "image" in inputs)
    }
    observations = Observations(
        revisions=observe_revisions(children.deployments, children.pods, usable, gpus),
        commands=commands_of(md),
        analysis=analysis,
        usage=usage,
        switches=switches,
        fallbacks=observe_fallbacks(view, references, md, spec, children.deployments, claims),
        mirror_supported=mirror_supported,
        conflicts=claims.messages(),
        route_refused=route_refusal(references, md, spec, status.stable_revision or desired, claims, route),
        burn=burn,
        deployment_name=name,
    )
    return Observed(observations, claims, route)
