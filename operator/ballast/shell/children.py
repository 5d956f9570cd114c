"""A ModelDeployment's children as the reconcile reads them: from memory, kept by kopf's indexes.

The indexes hold every object labelled with the deployment's name; whether one is really the
deployment's own (its controller ownerReference) is `ownership.py`'s to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ballast.kube.resources import BUDGETS, CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, HTTP_ROUTES, SERVICES, Resource
from ballast.shell.cluster_view import IndexView

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ChildSet:
    deployments: list[Manifest] = field(default_factory=list)
    pods: list[Manifest] = field(default_factory=list)
    revisions: list[Manifest] = field(default_factory=list)
    services: list[Manifest] = field(default_factory=list)
    routes: list[Manifest] = field(default_factory=list)
    autoscalers: list[Manifest] = field(default_factory=list)
    budgets: list[Manifest] = field(default_factory=list)

    def named(self, resource: Resource, name: str) -> Manifest | None:
        """The observed child of a kind by name, for comparing what is there with what should be."""
        by_kind = {
            DEPLOYMENTS: self.deployments,
            SERVICES: self.services,
            HTTP_ROUTES: self.routes,
            CONTROLLER_REVISIONS: self.revisions,
            HPAS: self.autoscalers,
            BUDGETS: self.budgets,
        }
        return next((c for c in by_kind.get(resource, []) if c["metadata"]["name"] == name), None)


class Children:
    """From kopf's indexes, kept by the watches the operator runs anyway: no API call at all."""

    def __init__(
        self,
        deployments: IndexView,
        pods: IndexView,
        revisions: IndexView,
        services: IndexView,
        routes: IndexView,
        autoscalers: IndexView,
        budgets: IndexView,
    ) -> None:
        self.indexes = (deployments, pods, revisions, services, routes, autoscalers, budgets)

    def of(self, namespace: str, name: str) -> ChildSet:
        key = (namespace, name)
        return ChildSet(*(list(index[key]) if key in index else [] for index in self.indexes))
