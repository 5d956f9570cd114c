"""ReferenceGrants: may a ModelDeployment send users to a Service in another namespace?

A ReferenceGrant authorises a *kind* from a namespace, not one object. A grant to HTTPRoutes would
let every route of that namespace reach the Service, so Ballast asks for a grant from its own kind
(`ballast.dev` `ModelDeployment`). The Gateway still checks the route itself, so the target
namespace also needs a grant from HTTPRoute; both may sit in one ReferenceGrant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ballast import GROUP

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True)
class GrantTo:
    group: str
    kind: str
    name: str | None = None


@dataclass(frozen=True)
class Grant:
    """One ReferenceGrant as the index holds it."""

    namespace: str
    name: str
    sources: tuple[GrantFrom, ...]
    targets: tuple[GrantTo, ...]

    def permits(self, group: str, kind: str, from_namespace: str, service: str) -> bool:
        source = GrantFrom(group, kind, from_namespace) in self.sources
        target = any(t.group == "" and t.kind == "Service" and t.name in (None, service) for t in self.targets)
        return source and target


def grant_of(body: dict[str, Any]) -> Grant:
    spec = body.get("spec") or {}
    return Grant(
        namespace=body["metadata"]["namespace"],
        name=body["metadata"]["name"],
        sources=tuple(
            GrantFrom(f.get("group", ""), f.get("kind", ""), f.get("namespace", "")) for f in spec.get("from") or []
        ),
        targets=tuple(GrantTo(t.get("group", ""), t.get("kind", ""), t.get("name")) for t in spec.get("to") or []),
    )


def cross_namespace_problem(grants: Iterable[Grant], from_namespace: str, to_namespace: str, service: str) -> str:
    """Why a ModelDeployment of `from_namespace` may not route to `to_namespace/service` ('' when it may)."""
    held = list(grants)
    ours = any(g.permits(GROUP, "ModelDeployment", from_namespace, service) for g in held)
    routes = any(g.permits(GATEWAY_GROUP, "HTTPRoute", from_namespace, service) for g in held)
    if not ours:
        alone = " (a grant to HTTPRoutes alone is not enough: it would authorise every route there)" if routes else ""
        return (
            f"no ReferenceGrant in namespace {to_namespace} lets ModelDeployments ({GROUP}) of namespace "
            f"{from_namespace} use Service {service}{alone}"
        )
    if not routes:
        return (
            f"the ReferenceGrant in namespace {to_namespace} lets ModelDeployments use Service {service}, but the "
            f"Gateway also needs one from HTTPRoute ({GATEWAY_GROUP}) of namespace {from_namespace}"
        )
    return ""
