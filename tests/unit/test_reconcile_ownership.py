"""One whole reconcile against an in-memory API: Ballast never adopts what it did not create, refuses references
admission cannot judge with traffic unchanged, and writes only when something changed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ballast.api.revision import revision_hash
from ballast.kube.client import ApiError
from ballast.shell.reconciler import Reconciler
from ballast.shell.references import OPT_IN_ANNOTATION
from tests.unit.fake_kube import FakeKube

NS = "apps"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"name": "m", "image": "sim:1", "replicas": 1},
            "traffic": {"parentRefs": [{"name": "gw"}], "port": 8000},
            "rollout": {"steps": [{"weight": 100}], "scaleDownDelay": "10m"},
        },
    }
    body["spec"].update(spec)
    return body


def users_service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "a"}},
        "spec": {"selector": {"app": "mine"}, "ports": [{"port": 8080}], **spec},
    }


def users_route(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {"rules": [{"name": "docs", "backendRefs": [{"name": "docs", "port": 80}]},
                           {"name": "model", "backendRefs": [{"name": "placeholder", "port": 8000}]}]},
    }  # fmt: skip


class Harness:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.now = T0
        kube = self.kube
        self.reconciler = Reconciler(
            kube.api(), clock=lambda: self.now, view=kube.cluster_view(), references=kube.references(),
            children=kube.children(),
        )  # fmt: skip

    async def reconcile(self, name: str, seconds: float = 1) -> dict[str, Any]:
        """One reconcile with the indexes as kopf would hold them now; returns the ModelDeployment's status."""
        self.now += timedelta(seconds=seconds)
        kube, reconciler = self.kube, self.reconciler
        reconciler.children, reconciler.view = kube.children(), kube.cluster_view()
        reconciler.references = kube.references()
        await reconciler.reconcile(NS, name)
        found = kube.get("modeldeployments", NS, name)
        assert found is not None
        return dict(found.get("status") or {})

    def available(self) -> None:
        """Every Deployment rolled out and ready, as the Deployment controller would report."""
        for body in self.kube.of("deployments"):
            body["status"] = {
                "observedGeneration": body["metadata"].get("generation", 1),
                "readyReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}],
            }


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


async def test_a_service_and_a_route_of_a_childs_name_are_left_untouched_and_reported() -> None:
    h = Harness()
    md = h.kube.put("modeldeployments", model_deployment("bot"))
    revision = revision_hash(md["spec"])
    service = h.kube.put("services", users_service(f"bot-{revision}"))
    route = h.kube.put("httproutes", users_route("bot"))
    status = await h.reconcile("bot")
    assert h.kube.get("services", NS, f"bot-{revision}") == service
    assert h.kube.get("httproutes", NS, "bot") == route
    assert not [w for w in h.kube.writes() if w[1] in (f"services/bot-{revision}", "httproutes/bot")]
    owned = condition(status, "ChildrenOwned")
    assert (owned["status"], owned["reason"]) == ("False", "NameTaken")
    assert f"Service bot-{revision} exists and was not created by Ballast" in owned["message"]
    assert "HTTPRoute bot exists and was not created by Ballast" in owned["message"]
    accepted = condition(status, "RouteAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NameTaken")
    assert status.get("stableRevision") is None  # nothing moved: no revision serves through someone else's objects
    assert [h["action"] for h in status["history"]] == ["refuse-adoption", "refuse-route"]
    events = [e["reason"] for e in h.kube.of("events")]
    assert sorted(events) == ["NameTaken", "NameTaken"]
    again = await h.reconcile("bot")
    assert len(again["history"]) == 2  # one decision per refusal, not one per reconcile
    # Once the user's objects are gone, Ballast deploys.
    del h.kube.objects[("services", NS, f"bot-{revision}")]
    del h.kube.objects[("httproutes", NS, "bot")]
    status = await h.reconcile("bot")
    assert status["stableRevision"] == revision
    assert condition(status, "ChildrenOwned")["status"] == "True"
    assert h.kube.get("httproutes", NS, "bot") is not None


async def test_a_name_one_deployment_derives_is_never_taken_from_another() -> None:
    """`x-reject` (service router: its Service is named x-reject) beside the reject responder of `x`."""
    h = Harness()
    h.kube.put("modeldeployments", model_deployment("x", fallbacks=[{"name": "sorry", "reject": {}}]))
    await h.reconcile("x")
    responder = copy.deepcopy(h.kube.get("services", NS, "x-reject"))
    assert responder is not None
    h.kube.put("modeldeployments", model_deployment("x-reject", traffic={"router": "service", "port": 8000}))
    status = await h.reconcile("x-reject")
    assert h.kube.get("services", NS, "x-reject") == responder
    owned = condition(status, "ChildrenOwned")
    assert "Service x-reject belongs to ModelDeployment x" in owned["message"]
    assert condition(status, "RouteAccepted")["reason"] == "NameTaken"


async def test_an_object_created_between_the_look_and_the_write_is_never_adopted() -> None:
    """A child absent from memory and from a read is created with a precondition no object meets: one that
    appeared meanwhile is a conflict (409), never overwritten; the next reconcile reports it."""
    h = Harness()
    md = h.kube.put("modeldeployments", model_deployment("bot"))
    workload = f"bot-{revision_hash(md['spec'])}"
    users = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": workload, "namespace": NS},
             "spec": {"replicas": 5}}  # fmt: skip
    h.kube.created_after_read[("deployments", NS, workload)] = users
    with pytest.raises(ApiError) as conflict:
        await h.reconcile("bot")
    assert conflict.value.status == 409
    taken = h.kube.get("deployments", NS, workload)
    assert taken is not None
    assert (taken["spec"], "ownerReferences" in taken["metadata"]) == ({"replicas": 5}, False)
    status = await h.reconcile("bot")
    assert (
        f"Deployment {workload} exists and was not created by Ballast" in condition(status, "ChildrenOwned")["message"]
    )


async def test_a_child_written_moments_ago_and_not_yet_in_memory_is_still_its_own() -> None:
    h = Harness()
    h.kube.put("modeldeployments", model_deployment("bot"))
    await h.reconcile("bot")
    h.reconciler.children = h.kube.children()
    children = h.kube.children
    h.kube.children = lambda: type(children())(*({},) * len(children().indexes))  # type: ignore[method-assign]  # the watch lags
    status = await h.reconcile("bot")
    assert condition(status, "ChildrenOwned")["status"] == "True"


async def test_an_unchanged_reconcile_writes_nothing_autoscalers_included() -> None:
    h = Harness()
    md = h.kube.put(
        "modeldeployments",
        model_deployment("bot", model={"name": "m", "image": "sim:1", "autoscaling": {"maxReplicas": 3}}),
    )
    await h.reconcile("bot")
    h.available()
    md["spec"]["model"]["image"] = "sim:2"  # a canary, promoted at once (one step of 100%): a previous revision
    for _ in range(4):
        await h.reconcile("bot", seconds=31)  # the step's hold (rollout.interval) passes
        h.available()
    status = await h.reconcile("bot")
    assert {r["role"] for r in status["revisions"]} == {"stable", "previous"}
    before = len(h.kube.requests)
    await h.reconcile("bot")
    await h.reconcile("bot")
    # Each costs one call: the ModelDeployment read; everything else comes from memory.
    assert h.kube.requests[before:] == [("GET", "modeldeployments/bot")] * 2
    scalers = sorted(b["metadata"]["name"] for b in h.kube.of("horizontalpodautoscalers"))
    assert scalers == [f"bot-{status['stableRevision']}"]


async def test_a_route_ref_takes_a_rule_only_of_a_route_that_opts_in() -> None:
    h = Harness()
    traffic = {"routeRef": {"name": "shared", "rule": "model"}, "port": 8000}
    h.kube.put("modeldeployments", model_deployment("bot", traffic=traffic))
    route = h.kube.put("httproutes", users_route("shared"))
    status = await h.reconcile("bot")
    assert h.kube.get("httproutes", NS, "shared") == route
    refused = condition(status, "RouteAccepted")
    assert (refused["status"], refused["reason"]) == ("False", "NotOptedIn")
    assert f"{OPT_IN_ANNOTATION}: bot" in refused["message"]
    assert "traffic is left exactly as it is" in refused["message"]
    # What the Gateway accepted is another question, moot while Ballast writes nothing to the route.
    unwritten = condition(status, "GatewayAccepted")
    assert (unwritten["status"], unwritten["reason"]) == ("Unknown", "NotWritten")
    # The route's owner opts in: the rule is Ballast's; then nothing more is written while nothing changes.
    route["metadata"]["annotations"] = {OPT_IN_ANNOTATION: "bot, other"}
    status = await h.reconcile("bot")
    assert condition(status, "RouteAccepted")["status"] == "True"
    written = h.kube.get("httproutes", NS, "shared")
    assert written is not None
    # Written is not served: a route attached to no Gateway is served by none; one attached waits for the
    # Gateway's report on the generation with Ballast's rule.
    assert condition(await h.reconcile("bot"), "GatewayAccepted")["reason"] == "NoParentRefs"
    written["spec"]["parentRefs"] = [{"name": "gw"}]
    assert condition(await h.reconcile("bot"), "GatewayAccepted")["reason"] == "Pending"
    reported = {"type": "Accepted", "status": "True", "observedGeneration": written["metadata"]["generation"]}
    written["status"] = {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "traefik.io/gateway",
                                      "conditions": [reported, {**reported, "type": "ResolvedRefs"}]}]}  # fmt: skip
    accepted = condition(await h.reconcile("bot"), "GatewayAccepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert [r["name"] for r in written["spec"]["rules"][1]["backendRefs"]] == [f"bot-{status['stableRevision']}"]
    assert written["spec"]["rules"][0] == route["spec"]["rules"][0]
    before = len(h.kube.requests)
    await h.reconcile("bot")
    await h.reconcile("bot")
    # Unchanged, each reconcile costs two reads: the ModelDeployment and the route it writes a rule of.
    assert h.kube.requests[before:] == [("GET", "modeldeployments/bot"), ("GET", "httproutes/shared")] * 2
    # A second deployment claiming the same rule is refused, and the rule keeps pointing at the first.
    h.kube.put("modeldeployments", model_deployment("other", traffic=traffic))
    status = await h.reconcile("other")
    claimed = condition(status, "RouteAccepted")
    assert (claimed["reason"], "held by ModelDeployment bot" in claimed["message"]) == ("RuleClaimed", True)
    assert h.kube.get("httproutes", NS, "shared") == written


async def test_a_fallback_that_is_a_ballast_revision_or_responder_is_not_usable() -> None:
    h = Harness()
    h.kube.put("modeldeployments", model_deployment("big", fallbacks=[{"name": "sorry", "reject": {}}]))
    await h.reconcile("big")
    stable = revision_hash(model_deployment("big")["spec"])
    fallbacks = [
        {"name": "revision", "service": {"name": f"big-{stable}", "port": 8000}},
        {"name": "responder", "service": {"name": "big-reject", "port": 8080}},
    ]
    h.kube.put("modeldeployments", model_deployment("small", fallbacks=fallbacks))
    status = await h.reconcile("small")
    available = condition(status, "FallbackAvailable")
    assert available["status"] == "False"
    assert f"Service {NS}/big-{stable} is revision {stable} of ModelDeployment big" in available["message"]
    assert f"Service {NS}/big-reject is the reject responder of ModelDeployment big" in available["message"]


async def test_a_fallback_cycle_between_deployments_is_not_usable() -> None:
    h = Harness()
    for name, other in (("a", "b"), ("b", "a")):
        h.kube.put("services", users_service(f"to-{other}", selector={"ballast.dev/deployment": other}))
        fallbacks = [{"name": "other", "service": {"name": f"to-{other}", "port": 8080}}]
        h.kube.put("modeldeployments", model_deployment(name, fallbacks=fallbacks))
    h.kube.put("services", users_service("rules"))
    for name in ("a", "b"):
        status = await h.reconcile(name)
        message = condition(status, "FallbackAvailable")["message"]
        assert "a fallback cycle" in message
        other = "b" if name == "a" else "a"
        assert f"({NS}/{name} -> {NS}/{other} -> {NS}/{name})" in message


async def test_the_responders_disruption_budget_is_its_own_or_left_alone() -> None:
    """Two responder pods get a PodDisruptionBudget; one of that name Ballast did not create is never adopted,
    and a responder of one pod, or none, leaves no budget of its own behind."""
    h = Harness()
    md = h.kube.put("modeldeployments", model_deployment("bot", fallbacks=[{"name": "sorry", "reject": {}}]))
    await h.reconcile("bot")
    budget = h.kube.get("poddisruptionbudgets", NS, "bot-reject")
    assert budget is not None
    assert budget["spec"]["minAvailable"] == 1
    md["spec"]["fallbacks"] = [{"name": "sorry", "reject": {"replicas": 1}}]
    await h.reconcile("bot")
    assert h.kube.get("poddisruptionbudgets", NS, "bot-reject") is None
    users = h.kube.put("poddisruptionbudgets", {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                                 "metadata": {"name": "bot-reject", "namespace": NS},
                                                 "spec": {"maxUnavailable": 0}})  # fmt: skip
    md["spec"]["fallbacks"] = [{"name": "sorry", "reject": {}}]
    status = await h.reconcile("bot")
    assert h.kube.get("poddisruptionbudgets", NS, "bot-reject") == users
    owned = condition(status, "ChildrenOwned")
    assert "PodDisruptionBudget bot-reject exists and was not created by Ballast" in owned["message"]
    del md["spec"]["fallbacks"]
    await h.reconcile("bot")
    assert h.kube.get("poddisruptionbudgets", NS, "bot-reject") == users  # not its own: never deleted
    assert h.kube.get("deployments", NS, "bot-reject") is None  # the responder itself was, being its own
