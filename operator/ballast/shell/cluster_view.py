"""ClusterView: the operator's in-memory view of switches, namespaces, ReferenceGrants, ModelDeployments
and Services, read from kopf's indexes.

kopf keeps these indexes from watch events (handlers/indexes.py) and runs no handler before they
are filled, so a restarted operator never mistakes a switch it has not read yet for a released one.
Every look-up here is memory only: a switch finds its targets without an API call.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec
from ballast.api.status import KillSwitchSource
from ballast.rollout.switch_selection import DeploymentEntry, Labels, Switch, engaged_sources
from ballast.traffic.acceptance import CONDITION as GATEWAY_ACCEPTED
from ballast.traffic.grants import Grant, cross_namespace_problem

# kopf's Index is a Mapping of keys to Stores (iterables of what the index handler returned).
IndexView = Mapping[Any, Iterable[Any]]
CLUSTER_KEY = "*"


# KillSwitchEngaged reasons of a switch that selects a deployment it cannot switch (the switch names it).
REFUSED = ("NoUsableFallback", "CannotSwitch", "RouteRefused")


def deployment_entry(body: Mapping[str, Any]) -> DeploymentEntry:
    metadata = body["metadata"]
    state = (body.get("status") or {}).get("killSwitch") or {}
    conditions = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
    engaged = conditions.get("KillSwitchEngaged") or {}
    route = conditions.get(GATEWAY_ACCEPTED) or {}
    refused = engaged.get("message") if engaged.get("reason") in REFUSED else None
    holding = engaged.get("message") if engaged.get("reason") == "Holding" else None
    return DeploymentEntry(
        namespace=metadata["namespace"],
        name=metadata["name"],
        labels=dict(metadata.get("labels") or {}),
        engaged=bool(state.get("engaged")),
        fallback=state.get("fallback"),
        since=state.get("engagedAt"),
        refused=refused,
        # A Service router has no route to accept: what it wrote is what serves.
        accepted=route.get("status") == "True" if route else True,
        not_accepted=None if route.get("status") in (None, "True") else route.get("message"),
        holding=holding,
    )


def route_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What acceptance needs of an HTTPRoute: generation, parents, the rules' backends and the parents' reports."""
    spec = body.get("spec") or {}
    metadata = body["metadata"]
    return copy.deepcopy({
        "metadata": {"name": metadata["name"], "namespace": metadata.get("namespace"),
                     "generation": metadata.get("generation")},
        "spec": {"parentRefs": spec.get("parentRefs") or [],
                 "rules": [{"name": r.get("name"), "backendRefs": r.get("backendRefs") or []}
                           for r in spec.get("rules") or []]},
        "status": {"parents": (body.get("status") or {}).get("parents") or []},
    })  # fmt: skip


def spec_writer(managed_fields: list[dict[str, Any]]) -> str | None:
    """The field manager that first wrote the spec: who engaged the switch, not who wrote its status since (the
    API server keeps managedFields in no order that says who came first)."""
    writers = [
        entry
        for entry in managed_fields
        if entry.get("subresource") != "status" and "f:spec" in (entry.get("fieldsV1") or {})
    ]
    first = min(writers, key=lambda entry: str(entry.get("time") or ""), default=None)
    return str(first["manager"]) if first is not None and first.get("manager") else None


def switch_of(body: Mapping[str, Any]) -> Switch:
    """A Switch from a KillSwitch or ClusterKillSwitch body (admission has validated the spec)."""
    metadata = body["metadata"]
    creator = spec_writer(metadata.get("managedFields") or [])
    if body["kind"] == "KillSwitch":
        spec = KillSwitchSpec.model_validate(body["spec"])
        return Switch("KillSwitch", metadata["name"], metadata["namespace"], spec, creator)
    cluster_spec = ClusterKillSwitchSpec.model_validate(body["spec"])
    return Switch("ClusterKillSwitch", metadata["name"], None, cluster_spec, creator)


def _values(index: IndexView, key: Any) -> list[Any]:
    return list(index[key]) if key in index else []


class ClusterView:
    def __init__(
        self,
        namespaced_switches: IndexView,
        cluster_switches: IndexView,
        namespaces: IndexView,
        grants: IndexView,
        deployments: IndexView,
        services: IndexView,
        routes: IndexView | None = None,
    ) -> None:
        self._namespaced = namespaced_switches  # namespace -> its KillSwitches
        self._cluster = cluster_switches  # CLUSTER_KEY -> every ClusterKillSwitch
        self._namespaces = namespaces  # namespace name -> its labels
        self._grants = grants  # namespace -> ReferenceGrants in it
        self._deployments = deployments  # namespace -> DeploymentEntry
        self._services = services  # (namespace, name) -> the Service's facts (references.ServiceFacts)
        # (namespace, name) -> route_summary() of every HTTPRoute; a live index that may be empty (falsy) at first.
        self._routes = routes if routes is not None else {}

    def namespace_labels(self, namespace: str) -> Labels:
        found = _values(self._namespaces, namespace)
        labels: Labels = found[0] if found else {}
        return labels

    def switches_for(self, namespace: str) -> list[Switch]:
        """The switches that could select a ModelDeployment of `namespace`."""
        return _values(self._namespaced, namespace) + _values(self._cluster, CLUSTER_KEY)

    def switch(self, key: tuple[str, str, str]) -> Switch | None:
        kind, namespace, _ = key
        candidates = (
            _values(self._cluster, CLUSTER_KEY) if kind == "ClusterKillSwitch" else _values(self._namespaced, namespace)
        )
        return next((s for s in candidates if s.key == key), None)

    def every_switch(self) -> list[Switch]:
        namespaced = [s for namespace in list(self._namespaced) for s in _values(self._namespaced, namespace)]
        return namespaced + _values(self._cluster, CLUSTER_KEY)

    def has_cluster_switches(self) -> bool:
        return bool(_values(self._cluster, CLUSTER_KEY))

    def sources_for(self, namespace: str, name: str, labels: Labels) -> tuple[KillSwitchSource, ...]:
        return engaged_sources(self.switches_for(namespace), namespace, name, labels, self.namespace_labels(namespace))

    def deployments_in(self, namespace: str) -> list[DeploymentEntry]:
        return _values(self._deployments, namespace)

    def every_deployment(self) -> list[DeploymentEntry]:
        return [entry for namespace in list(self._deployments) for entry in self.deployments_in(namespace)]

    def deployment(self, namespace: str, name: str) -> DeploymentEntry | None:
        return next((d for d in self.deployments_in(namespace) if d.name == name), None)

    def selected_by(self, switch: Switch) -> list[DeploymentEntry]:
        """Every ModelDeployment the switch selects (engaged or not), in namespace/name order."""
        namespaces = [switch.namespace] if switch.namespace is not None else sorted(self._deployments)
        found = [
            entry
            for namespace in namespaces
            for entry in self.deployments_in(namespace)
            if switch.selects(namespace, entry.name, entry.labels, self.namespace_labels(namespace))
        ]
        return sorted(found, key=lambda e: (e.namespace, e.name))

    def grant_problem(self, from_namespace: str, to_namespace: str, service: str) -> str:
        grants: list[Grant] = _values(self._grants, to_namespace)
        return cross_namespace_problem(grants, from_namespace, to_namespace, service)

    def service_ports(self, namespace: str, name: str) -> list[int] | None:
        """The ports of a Service, or None when it does not exist."""
        found = _values(self._services, (namespace, name))
        return list(found[0].ports) if found else None

    def route(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An HTTPRoute's rules and its Gateways' reports, or None when it does not exist (yet)."""
        found = _values(self._routes, (namespace, name))
        route: dict[str, Any] | None = found[0] if found else None
        return route
