"""Observe: gather the facts the decision core is given (`rollout.observations.Observations`).

Everything comes from the ModelDeployment and the in-memory indexes, except a Gateway's supported
features, read only when this decision could write a mirror.
"""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import Fallback, ModelDeploymentSpec
from ballast.api.status import Analysis, ModelDeploymentStatus
from ballast.kube.client import KubeApi
from ballast.rollout.observations import Commands, FallbackObservation, Observations, RevisionObservation
from ballast.shell.children import ChildSet
from ballast.shell.cluster_view import ClusterView
from ballast.traffic.routers import router_for
from ballast.workloads import render
from ballast.workloads.responder_manifests import RESPONDER_LABEL, responder_name

Manifest = dict[str, Any]

PROMOTE_ANNOTATION = "ballast.dev/promote"
ABORT_ANNOTATION = "ballast.dev/abort"
PAUSE_ANNOTATION = "ballast.dev/paused"


def commands_of(md: Manifest) -> Commands:
    annotations = md["metadata"].get("annotations") or {}
    return Commands(
        promote=annotations.get(PROMOTE_ANNOTATION),
        abort=annotations.get(ABORT_ANNOTATION),
        paused=annotations.get(PAUSE_ANNOTATION, "").lower() == "true",
    )


def available(deployment: Manifest) -> bool:
    status = deployment.get("status") or {}
    fresh = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return fresh and conditions.get("Available") == "True" and status.get("readyReplicas", 0) > 0


def revision_of(child: Manifest) -> str | None:
    """The revision a child belongs to; None for the deployment's other children (the reject responder)."""
    revision: str | None = (child["metadata"].get("labels") or {}).get(render.REVISION_LABEL)
    return revision


def observe_revisions(deployments: list[Manifest], pods: list[Manifest]) -> dict[str, RevisionObservation]:
    restarts: dict[str, int] = {}
    for pod in pods:
        revision = revision_of(pod)
        counts = [c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []]
        if revision:
            restarts[revision] = max(restarts.get(revision, 0), *counts, 0)
    found = {}
    for deployment in deployments:
        revision = revision_of(deployment)
        if revision is None:
            continue
        found[revision] = RevisionObservation(
            exists=True,
            available=available(deployment),
            ready_replicas=int((deployment.get("status") or {}).get("readyReplicas", 0)),
            restarts=restarts.get(revision, 0),
        )
    return found


def fallback_service(md: Manifest, fallback: Fallback) -> tuple[str, str, int] | None:
    """(namespace, name, port) of a Service fallback."""
    if fallback.service is None:
        return None
    ref = fallback.service
    return ref.namespace or md["metadata"]["namespace"], ref.name, ref.port


def _service_problem(view: ClusterView, md: Manifest, namespace: str, name: str, port: int) -> str:
    own = md["metadata"]["namespace"]
    problem = view.grant_problem(own, namespace, name) if namespace != own else ""
    if problem:
        return problem
    ports = view.service_ports(namespace, name)
    if ports is None:
        return f"Service {namespace}/{name} not found"
    if port not in ports:
        return f"Service {namespace}/{name} has no port {port} (it has {', '.join(map(str, ports)) or 'none'})"
    return ""


def observe_fallbacks(
    view: ClusterView, md: Manifest, spec: ModelDeploymentSpec, deployments: list[Manifest]
) -> dict[str, FallbackObservation]:
    """Whether each Service and reject fallback could take users now (previousRevision is the core's to judge)."""
    found: dict[str, FallbackObservation] = {}
    responder = responder_name(md["metadata"]["name"])
    # Usable while one pod serves: one of two restarting must not move users (or hold a switch).
    ready = max(
        (
            int((d.get("status") or {}).get("readyReplicas", 0))
            for d in deployments
            if d["metadata"]["name"] == responder and RESPONDER_LABEL in d["metadata"].get("labels", {})
        ),
        default=0,
    )
    for fallback in spec.fallbacks:
        service = fallback_service(md, fallback)
        if service is not None:
            problem = _service_problem(view, md, *service)
        elif fallback.reject is not None:
            problem = "" if ready else f"the responder Deployment {responder} has no ready pod"
        else:
            continue
        found[fallback.name] = FallbackObservation(usable=not problem, problem=problem)
    return found


def _may_mirror(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, switched: bool) -> bool:
    """Whether this decision may write a mirror (a canary before its first step with a shadow phase, or a
    switch capturing traffic): only then are the Gateways' features read."""
    shadow = spec.rollout.shadow is not None and status.canary_revision is not None and status.current_step is None
    return shadow or (switched and bool(spec.kill_switch and spec.kill_switch.capture_traffic))


async def observe(
    api: KubeApi,
    view: ClusterView,
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    children: ChildSet,
    analysis: Analysis | None,
) -> Observations:
    """Everything the decision core is told about one ModelDeployment."""
    metadata = md["metadata"]
    switches = view.sources_for(metadata["namespace"], metadata["name"], metadata.get("labels") or {})
    mirror_supported = True
    if _may_mirror(spec, status, bool(switches)):
        mirror_supported = await router_for(spec.traffic.router).can_mirror(api, md, spec)
    return Observations(
        revisions=observe_revisions(children.deployments, children.pods),
        commands=commands_of(md),
        analysis=analysis,
        switches=switches,
        fallbacks=observe_fallbacks(view, md, spec, children.deployments),
        mirror_supported=mirror_supported,
    )
