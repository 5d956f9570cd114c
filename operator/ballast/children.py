"""A ModelDeployment's children as the reconcile reads them: from memory (kopf indexes) or, without
indexes, from the API server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from ballast.kubeapi import CONTROLLER_REVISIONS, DEPLOYMENTS, HTTP_ROUTES, PODS, SERVICES, KubeApi, Resource
from ballast.switchboard import IndexView
from ballast.workloads.render import DEPLOYMENT_LABEL

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ChildSet:
    deployments: list[Manifest] = field(default_factory=list)
    pods: list[Manifest] = field(default_factory=list)
    revisions: list[Manifest] = field(default_factory=list)
    services: list[Manifest] = field(default_factory=list)
    routes: list[Manifest] = field(default_factory=list)

    def named(self, resource: Resource, name: str) -> Manifest | None:
        """The observed child of a kind by name, for comparing what is there with what should be."""
        by_kind = {DEPLOYMENTS: self.deployments, SERVICES: self.services, HTTP_ROUTES: self.routes}
        return next((c for c in by_kind.get(resource, []) if c["metadata"]["name"] == name), None)


class Children(Protocol):
    async def of(self, namespace: str, name: str) -> ChildSet:
        """Every child labelled with the deployment's name."""


class ListedChildren:
    """From the API server: five list calls per reconcile (for use without kopf's indexes)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def of(self, namespace: str, name: str) -> ChildSet:
        selector = f"{DEPLOYMENT_LABEL}={name}"
        kinds = (DEPLOYMENTS, PODS, CONTROLLER_REVISIONS, SERVICES, HTTP_ROUTES)
        found = await asyncio.gather(*(self.api.list_all(kind, namespace, selector) for kind in kinds))
        return ChildSet(*found)


class IndexedChildren:
    """From kopf's indexes, kept by the watches the operator runs anyway: no API call at all."""

    def __init__(
        self, deployments: IndexView, pods: IndexView, revisions: IndexView, services: IndexView, routes: IndexView
    ) -> None:
        self.indexes = (deployments, pods, revisions, services, routes)

    async def of(self, namespace: str, name: str) -> ChildSet:
        key = (namespace, name)
        return ChildSet(*(list(index[key]) if key in index else [] for index in self.indexes))
