"""The in-memory view and the switch writer: which deployments a switch event reconciles, and switch status."""

from __future__ import annotations

import asyncio
from typing import Any

from ballast.rollout.switch_selection import DeploymentEntry
from ballast.shell.cluster_view import CLUSTER_KEY, ClusterView, deployment_entry, switch_of
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.references import ServiceFacts
from ballast.traffic.grants import grant_of

WRITER = {
    "manager": "kubectl-client-side-apply",
    "operation": "Update",
    "time": "2026-11-27T10:00:00Z",
    "fieldsV1": {"f:spec": {"f:reason": {}}},
}


def switch_body(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None, generation: int = 1) -> Any:
    metadata: dict[str, Any] = {"name": name, "generation": generation, "creationTimestamp": "2026-11-27T10:00:00Z",
                                "managedFields": [WRITER]}  # fmt: skip
    if namespace:
        metadata["namespace"] = namespace
    return {"kind": kind, "metadata": metadata, "spec": {"reason": "incident", **spec}}


class FakeReconciler:
    def __init__(self) -> None:
        self.switched: list[tuple[str, str]] = []  # reconciles asked for in the switch lane

    def switch(self, namespace: str, name: str) -> None:
        self.switched.append((namespace, name))


class FakeApi:
    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = bodies
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def get(self, resource: Any, namespace: str | None, name: str) -> Any:
        body = self.bodies.get(name)
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "7"}} if body else None

    async def patch_status(self, resource: Any, namespace: str | None, name: str, status: Any, version: str) -> Any:
        self.patches.append((name, status))
        self.bodies[name] = {**self.bodies[name], "status": status}
        return {}

    async def create(self, resource: Any, namespace: str, body: Any) -> Any:
        self.events.append((namespace, body))
        return body


def cluster_view(switches: list[Any], deployments: list[DeploymentEntry], namespaces: dict[str, dict[str, str]]) -> Any:
    namespaced: dict[Any, list[Any]] = {}
    cluster: dict[Any, list[Any]] = {}
    for body in switches:
        switch = switch_of(body)
        (
            namespaced.setdefault(switch.namespace, []) if switch.namespace else cluster.setdefault(CLUSTER_KEY, [])
        ).append(switch)
    by_namespace: dict[str, list[DeploymentEntry]] = {}
    for entry in deployments:
        by_namespace.setdefault(entry.namespace, []).append(entry)
    services = {("a", "rules"): [ServiceFacts(ports=(8080,))]}  # a kopf index: every key holds a store of values
    return ClusterView(namespaced, cluster, {k: [v] for k, v in namespaces.items()}, {}, by_namespace, services)


FLEET = [
    DeploymentEntry("prod-1", "bot", {"tier": "external"}),
    DeploymentEntry("prod-1", "internal", {"tier": "internal"}),
    DeploymentEntry("prod-2", "bot", {"tier": "external"}, engaged=True, fallback="rules", since="t", accepted=True),
    DeploymentEntry("dev", "bot", {"tier": "external"}),
]
NAMESPACES = {"prod-1": {"env": "prod"}, "prod-2": {"env": "prod"}, "dev": {"env": "dev"}}
CLUSTER_SWITCH = switch_body(
    "ClusterKillSwitch", "outage",
    {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "selector": {"matchLabels": {"tier": "external"}}},
)  # fmt: skip


async def test_a_switch_event_reconciles_what_it_selects_before_and_after_a_change_in_the_switch_lane() -> None:
    view = cluster_view([CLUSTER_SWITCH], FLEET, NAMESPACES)
    reconciler = FakeReconciler()
    writer = KillSwitchDispatcher(FakeApi({"outage": CLUSTER_SWITCH}), view, reconciler)  # type: ignore[arg-type]
    writer.switch_changed(None, CLUSTER_SWITCH)
    assert sorted(reconciler.switched) == [("prod-1", "bot"), ("prod-2", "bot")]
    reconciler.switched.clear()
    writer.switch_changed("MODIFIED", CLUSTER_SWITCH)  # its own status write: same generation, same targets
    assert reconciler.switched == []
    narrowed = switch_body("ClusterKillSwitch", "outage", {"namespaces": ["prod-1"]}, generation=2)
    view = cluster_view([narrowed], FLEET, NAMESPACES)
    writer.view = view
    writer.switch_changed("MODIFIED", narrowed)  # prod-2/bot is let go, prod-1/internal newly held
    assert sorted(reconciler.switched) == [("prod-1", "bot"), ("prod-1", "internal"), ("prod-2", "bot")]
    await writer.runner.stop()


async def test_switch_status_names_each_selected_deployment_and_is_written_once() -> None:
    view = cluster_view([CLUSTER_SWITCH], FLEET, NAMESPACES)
    api = FakeApi({"outage": CLUSTER_SWITCH})
    writer = KillSwitchDispatcher(api, view, FakeReconciler())  # type: ignore[arg-type]
    writer.switch_changed(None, CLUSTER_SWITCH)
    while writer.runner.tasks:
        await asyncio.gather(*writer.runner.tasks)
    ((name, status),) = api.patches
    assert name == "outage"
    assert status["matched"] == 2
    assert status["deployments"] == [
        {"namespace": "prod-1", "name": "bot", "accepted": False, "problem": "not switched yet"},
        {"namespace": "prod-2", "name": "bot", "fallback": "rules", "since": "t", "accepted": True},
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Switching")
    assert "prod-1/bot: not switched yet" in ready["message"]
    await writer._write(("ClusterKillSwitch", "", "outage"))  # nothing changed: nothing written
    assert len(api.patches) == 1
    assert api.events == []


async def test_a_switch_names_what_it_cannot_switch_or_what_the_gateway_has_not_accepted_once() -> None:
    fleet = [
        DeploymentEntry("prod-1", "bot", {"tier": "external"}, refused="the service router cannot route to a fallback"),
        DeploymentEntry("prod-2", "bot", {"tier": "external"}, engaged=True, fallback="rules", since="t",
                        not_accepted="Gateway gw: ResolvedRefs is False (BackendNotFound)"),
    ]  # fmt: skip
    view = cluster_view([CLUSTER_SWITCH], fleet, NAMESPACES)
    api = FakeApi({"outage": {**CLUSTER_SWITCH, "apiVersion": "ballast.dev/v1alpha1",
                              "metadata": {**CLUSTER_SWITCH["metadata"], "uid": "u1"}}})  # fmt: skip
    writer = KillSwitchDispatcher(api, view, FakeReconciler())  # type: ignore[arg-type]
    await writer._write(("ClusterKillSwitch", "", "outage"))
    ((_, status),) = api.patches
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CannotSwitch")
    assert ready["message"] == "1 cannot be switched: prod-1/bot: the service router cannot route to a fallback"
    assert status["deployments"][1]["problem"] == "Gateway gw: ResolvedRefs is False (BackendNotFound)"
    ((namespace, event),) = api.events
    assert namespace == "default"  # a ClusterKillSwitch is cluster-scoped: its Events live in default
    assert (event["reason"], event["type"], event["involvedObject"]["kind"]) == (
        "CannotSwitch", "Warning", "ClusterKillSwitch")  # fmt: skip
    assert event["message"] == "prod-1/bot cannot be switched: the service router cannot route to a fallback"
    writer.view = cluster_view([CLUSTER_SWITCH], [fleet[0], DeploymentEntry("prod-2", "bot", {"tier": "external"},
                               engaged=True, fallback="rules", since="t", accepted=True)], NAMESPACES)  # fmt: skip
    await writer._write(("ClusterKillSwitch", "", "outage"))
    assert len(api.patches) == 2
    assert len(api.events) == 1  # the same refusal is not announced twice


def test_the_view_reads_sources_grants_and_services_from_memory() -> None:
    view = cluster_view([CLUSTER_SWITCH, switch_body("KillSwitch", "mine", {"modelDeployments": ["bot"]}, "dev")],
                 FLEET, NAMESPACES)  # fmt: skip
    sources = view.sources_for("dev", "bot", {"tier": "external"})
    assert [(s.kind, s.name, s.requested_by) for s in sources] == [("KillSwitch", "mine", "kubectl-client-side-apply")]
    assert [s.name for s in view.sources_for("prod-1", "bot", {"tier": "external"})] == ["outage"]
    assert view.service_ports("a", "rules") == [8080]
    assert view.service_ports("a", "missing") is None
    assert view.grant_problem("apps", "shared", "rules").startswith("no ReferenceGrant in namespace shared")


def test_index_entries_read_the_bodies_kopf_hands_over() -> None:
    entry = deployment_entry({
        "metadata": {"namespace": "a", "name": "bot", "labels": {"team": "x"}},
        "status": {"killSwitch": {"engaged": False}, "conditions": [
            {"type": "KillSwitchEngaged", "status": "False", "reason": "NoUsableFallback", "message": "rules: gone"}]},
    })  # fmt: skip
    assert (entry.labels, entry.engaged, entry.refused) == ({"team": "x"}, False, "rules: gone")
    held = deployment_entry({
        "metadata": {"namespace": "a", "name": "byo"},
        "status": {"conditions": [{"type": "KillSwitchEngaged", "status": "False", "reason": "RouteRefused",
                                   "message": "route not opted in"}]},
    })  # fmt: skip
    assert held.refused == "route not opted in"  # the switch names it among those it cannot switch
    grant = grant_of({"metadata": {"namespace": "shared", "name": "g"}, "spec": {
        "from": [{"group": "ballast.dev", "kind": "ModelDeployment", "namespace": "apps"}],
        "to": [{"group": "", "kind": "Service"}]}})  # fmt: skip
    assert grant.permits("ballast.dev", "ModelDeployment", "apps", "anything")
    assert not grant.permits("ballast.dev", "ModelDeployment", "other", "anything")


def test_the_view_reads_routes_from_the_live_index_even_when_it_starts_empty() -> None:
    routes: dict[Any, list[Any]] = {}  # kopf fills its index in place after the view is built
    view = ClusterView({}, {}, {}, {}, {}, {}, routes)
    assert view.route("apps", "bot") is None
    routes[("apps", "bot")] = [{"metadata": {"name": "bot"}}]
    assert view.route("apps", "bot") == {"metadata": {"name": "bot"}}


def test_the_requester_of_a_switch_is_who_wrote_its_spec_not_who_wrote_its_status_since() -> None:
    """The API server lists managers in no order of arrival: Ballast's later status write may come first."""
    status_writer = {"manager": "ballast", "operation": "Update", "subresource": "status",
                     "time": "2026-11-27T10:00:01Z", "fieldsV1": {"f:status": {}}}  # fmt: skip
    later_editor = {**WRITER, "manager": "kubectl-edit", "time": "2026-11-27T11:00:00Z"}
    body = switch_body("KillSwitch", "mine", {"modelDeployments": ["bot"]}, "team")
    body["metadata"]["managedFields"] = [status_writer, later_editor, WRITER]
    assert switch_of(body).source().requested_by == "kubectl-client-side-apply"
    body["metadata"]["managedFields"] = [status_writer]
    assert switch_of(body).source().requested_by is None
