"""Which Services the route carries, from the status the decision core wrote.

Each revision's Service is reached on that revision's own port (recorded with it), so a change of
`traffic.port` moves only the canary's traffic, never the stable's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.traffic.router import Backends, Manifest, ServiceBackend
from ballast.workloads.render import port_name, served_port, workload_name
from ballast.workloads.responder_manifests import RESPONDER_PORT, responder_name

Recorded = Mapping[str, dict[str, Any]]  # revision -> its recorded inputs (ControllerRevision data)


def revision_port(spec: ModelDeploymentSpec, recorded: Recorded, revision: str) -> int:
    return served_port(recorded.get(revision) or {}, spec)


def fallback_backend(
    md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, recorded: Recorded
) -> ServiceBackend | None:
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
    previous = status.previous_revision
    return ServiceBackend(workload_name(name, previous), revision_port(spec, recorded, previous))


def _shared_port_name(spec: ModelDeploymentSpec, recorded: Recorded, revisions: list[str]) -> str | None:
    """The port name every serving revision gives its serving port, if they agree (one Service can target it)."""
    names = {port_name(recorded.get(r) or {}, spec) for r in revisions}
    return names.pop() if len(names) == 1 else None


def backends_for(
    md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, recorded: Recorded | None = None
) -> Backends | None:
    """None before the first revision exists. `recorded`: each revision's inputs (without, the spec's port)."""
    recorded = recorded or {}
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
    serving = [r for r in (status.stable_revision, canary, mirror) if r]
    return Backends(
        stable=workload_name(name, status.stable_revision),
        canary=workload_name(name, canary) if canary else None,
        weights=status.weights,
        mirror=workload_name(name, mirror) if mirror else None,
        fallback=fallback_backend(md, spec, status, recorded),
        ports={workload_name(name, r): revision_port(spec, recorded, r) for r in serving},
        port_name=_shared_port_name(spec, recorded, serving),
    )
