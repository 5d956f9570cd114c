"""Observe: the facts a decision needs, read from the ModelDeployment and the in-memory indexes."""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import Fallback, ModelDeploymentSpec
from ballast.rollout.observations import Commands, FallbackObservation, RevisionObservation
from ballast.switchboard import Switchboard
from ballast.workloads import render
from ballast.workloads.responder import RESPONDER_LABEL, responder_name

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


def _service_problem(board: Switchboard, md: Manifest, namespace: str, name: str, port: int) -> str:
    own = md["metadata"]["namespace"]
    problem = board.grant_problem(own, namespace, name) if namespace != own else ""
    if problem:
        return problem
    ports = board.service_ports(namespace, name)
    if ports is None:
        return f"Service {namespace}/{name} not found"
    if port not in ports:
        return f"Service {namespace}/{name} has no port {port} (it has {', '.join(map(str, ports)) or 'none'})"
    return ""


def observe_fallbacks(
    board: Switchboard, md: Manifest, spec: ModelDeploymentSpec, deployments: list[Manifest]
) -> dict[str, FallbackObservation]:
    """Whether each Service and reject fallback could take users now (previousRevision is the core's to judge)."""
    found: dict[str, FallbackObservation] = {}
    responder = responder_name(md["metadata"]["name"])
    ready = any(
        d["metadata"]["name"] == responder and RESPONDER_LABEL in d["metadata"].get("labels", {}) and available(d)
        for d in deployments
    )
    for fallback in spec.fallbacks:
        service = fallback_service(md, fallback)
        if service is not None:
            problem = _service_problem(board, md, *service)
        elif fallback.reject is not None:
            problem = "" if ready else f"the responder Deployment {responder} is not Available yet"
        else:
            continue
        found[fallback.name] = FallbackObservation(usable=not problem, problem=problem)
    return found
