"""Which Services the route carries, from the status the decision core wrote."""

from __future__ import annotations

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.traffic.router import Backends, Manifest, ServiceBackend
from ballast.workloads.render import workload_name
from ballast.workloads.responder_manifests import RESPONDER_PORT, responder_name


def fallback_backend(md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> ServiceBackend | None:
    chosen = status.weights.fallback_name
    fallback = next((f for f in spec.fallbacks if f.name == chosen), None)
    if fallback is None or status.weights.fallback == 0:
        return None
    name, namespace = md["metadata"]["name"], md["metadata"]["namespace"]
    if fallback.service is not None:
        other = fallback.service.namespace if fallback.service.namespace not in (None, namespace) else None
        return ServiceBackend(fallback.service.name, fallback.service.port, other)
    if fallback.reject is not None:
        return ServiceBackend(responder_name(name), RESPONDER_PORT)
    assert status.previous_revision is not None  # the core picks previousRevision only while it is warm
    return ServiceBackend(workload_name(name, status.previous_revision), spec.traffic.port)


def backends_for(md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> Backends | None:
    """None before the first revision exists."""
    if status.stable_revision is None:
        return None
    name = md["metadata"]["name"]
    canary = next((r.name for r in status.revisions if r.name == status.canary_revision and r.role == "canary"), None)
    mirror = status.mirror_revision
    if status.kill_switch.engaged:
        # Users get the fallback on every rule (the canary is no backend, so no header rule reaches it); with
        # capture, the stable revision keeps seeing a copy of every request and answers nobody.
        canary = None
        mirror = status.stable_revision if status.kill_switch.captured else None
    return Backends(
        stable=workload_name(name, status.stable_revision),
        canary=workload_name(name, canary) if canary else None,
        weights=status.weights,
        mirror=workload_name(name, mirror) if mirror else None,
        fallback=fallback_backend(md, spec, status),
    )
