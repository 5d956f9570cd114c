"""The Router protocol: one small interface; one file per implementation; `routers.py` picks by name.

Every method has a one-line contract; the decision core never sees a router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Weights
from ballast.api.types import Condition
from ballast.kube.client import KubeApi
from ballast.kube.resources import Resource

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ServiceBackend:
    """A Service that is not one of the deployment's revisions: a fallback."""

    name: str
    port: int
    namespace: str | None = None  # set only for another namespace (a ReferenceGrant allows it)


@dataclass(frozen=True)
class Backends:
    """The Services traffic is split across (names), and the split."""

    stable: str
    canary: str | None
    weights: Weights
    mirror: str | None = None  # a Service that receives a copy of every request and answers nobody
    fallback: ServiceBackend | None = None  # takes `weights.fallback` percent
    # Each revision Service's port (a revision keeps the port it started with), by Service name.
    ports: Mapping[str, int] = field(default_factory=dict)
    # The name every serving revision's pods give their serving port, when they agree: one Service selecting
    # all of them (the service router) targets it by name, since revisions may listen on different ports.
    port_name: str | None = None

    def port(self, service: str) -> int:
        return self.ports[service]


@dataclass(frozen=True)
class Capabilities:
    weights: bool
    header_match: bool
    mirror: bool
    fallback_service: bool


class Router(Protocol):
    capabilities: Capabilities

    async def reconcile(
        self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, current: Manifest | None
    ) -> None:
        """Make the routing objects exist and carry `backends` (idempotent); `current`: the object as observed."""

    async def finalize(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> None:
        """Remove what this router created for the ModelDeployment (when the router changes)."""

    def owned(self, md: Manifest) -> tuple[Resource, str]:
        """The kind and name of the object this router owns for the deployment."""

    async def can_mirror(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> bool:
        """Whether every Gateway in front of the deployment can mirror requests (shadow, traffic capture)."""

    def watched_route(self, md: Manifest, spec: ModelDeploymentSpec) -> str | None:
        """The HTTPRoute (in the deployment's namespace) whose status says what the Gateway accepted; None if none."""

    def acceptance(
        self, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, route: Manifest | None
    ) -> Condition | None:
        """Whether the Gateway accepted `route` carrying `backends` (the GatewayAccepted condition); None if moot."""
