"""Ownership: Ballast writes only what it created for this ModelDeployment, and never adopts anything else.

Every child carries a controller ownerReference to its ModelDeployment. Before a reconcile writes,
each object it may write (`planned`) is looked up: in the children index when it is there, in the
index of every Service, else with one GET (a child absent from the index is either not created yet
or someone else's). An object with that name whose controller is not this ModelDeployment (a
user's Service, another deployment's responder, an older deployment of the same name not yet
garbage-collected) is a conflict: it is left untouched and reported, never overwritten or deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.kube.resources import BUDGETS, CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, SERVICES, Resource
from ballast.shell.children import ChildSet
from ballast.traffic.routers import router_for
from ballast.workloads.render import workload_name
from ballast.workloads.responder_manifests import has_disruption_budget, responder_name

Manifest = dict[str, Any]
Lookup = Callable[[Resource, str], Awaitable[Manifest | None]]


@dataclass(frozen=True)
class Owner:
    """The controller of an object, from its ownerReferences."""

    kind: str
    name: str
    uid: str


def controller_of(metadata: Mapping[str, Any]) -> Owner | None:
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller"):
            return Owner(str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("uid", "")))
    return None


def ownership_problem(owner: Owner | None, md: Manifest) -> str:
    """Why an object controlled by `owner` is not this ModelDeployment's ('' when it is)."""
    metadata = md["metadata"]
    if owner is not None and owner.uid == metadata["uid"]:
        return ""
    if owner is None:
        return "exists and was not created by Ballast"
    if owner.kind == "ModelDeployment" and owner.name == metadata["name"]:
        return "belongs to an earlier ModelDeployment of this name (it goes once garbage-collected)"
    return f"belongs to {owner.kind} {owner.name}"


@dataclass(frozen=True)
class Claims:
    """The objects this reconcile may not write, with why (kind and name -> problem)."""

    conflicts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # The deployment's own objects memory had not seen yet (read with a GET): what the act step compares with.
    found: Mapping[tuple[str, str], Manifest] = field(default_factory=dict)

    def writable(self, resource: Resource, name: str) -> bool:
        return (resource.kind, name) not in self.conflicts

    def problem(self, resource: Resource, name: str) -> str:
        return self.conflicts.get((resource.kind, name), "")

    def observed(self, children: ChildSet, resource: Resource, name: str) -> Manifest | None:
        """The object as observed: from memory, else as read for this reconcile (None: absent, so create only)."""
        return children.named(resource, name) or self.found.get((resource.kind, name))

    def messages(self) -> tuple[str, ...]:
        return tuple(f"{kind} {name} {problem}" for (kind, name), problem in sorted(self.conflicts.items()))


def planned(
    md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, desired: str
) -> list[tuple[Resource, str]]:
    """Every object this reconcile may write: each revision's workload (the desired one's too), the reject
    responder (with its PodDisruptionBudget), and the route the router owns."""
    name = md["metadata"]["name"]
    revisions = [r.name for r in status.revisions]
    if desired not in revisions:
        revisions.append(desired)
    kinds = (DEPLOYMENTS, SERVICES, CONTROLLER_REVISIONS)
    found = [(kind, workload_name(name, r)) for r in revisions for kind in kinds]
    if spec.model.autoscaling:  # only serving revisions are scaled: the others' absent HPAs are not read each time
        serving = {r.name for r in status.revisions if r.role in ("stable", "canary")} | {desired}
        found += [(HPAS, workload_name(name, r)) for r in revisions if r in serving]
    reject = next((f.reject for f in spec.fallbacks if f.reject is not None), None)
    if reject is not None:
        found += [(DEPLOYMENTS, responder_name(name)), (SERVICES, responder_name(name))]
        if has_disruption_budget(reject):
            found.append((BUDGETS, responder_name(name)))
    if spec.traffic.route_ref is None:
        found.append(router_for(spec.traffic.router).owned(md))
    return found


async def claims_of(
    md: Manifest,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    desired: str,
    children: ChildSet,
    service_owner: Callable[[str], tuple[bool, Owner | None]],
    lookup: Lookup,
) -> Claims:
    """Look up each planned object: `service_owner(name)` answers for Services from memory ((exists, controller));
    `lookup` reads any other kind absent from the children index."""
    conflicts: dict[tuple[str, str], str] = {}
    found: dict[tuple[str, str], Manifest] = {}
    for resource, name in planned(md, spec, status, desired):
        key = (resource.kind, name)
        seen = children.named(resource, name)
        if seen is None and resource is SERVICES:
            exists, owner = service_owner(name)  # every Service is in memory
            problem = ownership_problem(owner, md) if exists else ""
            if problem:
                conflicts[key] = problem
            if problem or not exists:
                continue
        if seen is None:  # not in memory yet: absent, someone else's, or this deployment's own just written
            seen = await lookup(resource, name)
            if seen is None:
                continue
            found[key] = seen
        problem = ownership_problem(controller_of(seen["metadata"]), md)
        if problem:
            conflicts[key] = problem
            found.pop(key, None)
    return Claims(conflicts, found)


def is_ours(child: Manifest | None, md: Manifest) -> bool:
    """Whether an observed object is controlled by this ModelDeployment (the only kind Ballast deletes)."""
    owner = controller_of(child["metadata"]) if child is not None else None
    return owner is not None and owner.uid == md["metadata"]["uid"]
