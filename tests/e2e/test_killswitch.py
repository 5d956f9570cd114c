"""Kill switches and fallbacks end to end: the operator under its RBAC identity, real requests through Traefik."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import Operator
from tests.e2e.helpers import (
    apply,
    model_deployment,
    route_weights,
    send,
    start_canary,
    status,
    wait_available,
    wait_serving,
    wait_status,
)
from tests.e2e.manifests import revision

# The benchmark (scripts/bench-killswitch) measures the spread; a test only needs a bound that fails a regression.
SWITCH_BOUND = 5.0


def with_fallbacks(
    manifest: dict[str, Any], fallbacks: list[dict[str, Any]], policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    manifest["spec"]["fallbacks"] = fallbacks
    if policy is not None:
        manifest["spec"]["killSwitch"] = policy
    return manifest


def rules_service(cluster: Cluster, namespace: str, name: str = "rules") -> None:
    """A stand-in rules engine: a Deployment and Service answering in place of the model."""
    cluster.apply(revision(name, namespace, model="rules-engine", replicas=1))
    wait_available(cluster, name, namespace)


def kill_switch(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "KillSwitch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"reason": "answers cite a withdrawn policy", **spec},
    }


def served_only_by_prefix(data_plane: DataPlane, host: str, prefix: str, total: int = 20) -> bool:
    report = send(data_plane, host, total)
    return report.sent > 0 and set(report.by_backend) != set() and all(b.startswith(prefix) for b in report.by_backend)


def switch_status(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    scope = ["-n", namespace] if namespace else []
    body = json.loads(cluster.kubectl("get", kind, name, *scope, "-o", "json").stdout)
    result: dict[str, Any] = body.get("status") or {}
    return result


def condition(state: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in state.get("conditions", []) if c["type"] == kind), {})


def test_a_kill_switch_sends_every_request_to_the_fallback_and_deleting_it_restores_the_canary(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    rules_service(cluster, namespace)
    manifest = with_fallbacks(
        model_deployment("bot", namespace), [{"name": "rules", "service": {"name": "rules", "port": 8000}}],
        {"fallback": "rules", "captureTraffic": True},
    )  # fmt: skip
    stable, canary = start_canary(cluster, data_plane, namespace, "bot", manifest)
    split = {f"bot-{stable}": 70, f"bot-{canary}": 30}
    wait_until(lambda: route_weights(cluster, namespace, "bot") == split, 30, "the canary split on the route")
    host = f"bot.{namespace}.test"
    wait_available(cluster, f"bot-{canary}", namespace)

    started = time.monotonic()
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_until(lambda: served_only_by_prefix(data_plane, host, "rules-"), SWITCH_BOUND, "users served by the fallback")
    print(f"kill switch: every request at the fallback {time.monotonic() - started:.2f}s after the API write")
    assert route_weights(cluster, namespace, "bot") == {"rules": 100}
    switched = status(cluster, namespace, "bot")
    state = switched["killSwitch"]
    assert (state["engaged"], state["fallback"], state["captured"]) == (True, "rules", False)
    source = state["sources"][0]
    # No requestedBy (admission lets only the writer name themselves): status names the tool that created it.
    assert (source["kind"], source["name"], source["requestedBy"]) == (
        "KillSwitch",
        "incident",
        "kubectl-client-side-apply",
    )
    assert source["reason"] == "answers cite a withdrawn policy"
    assert state["resume"]["weights"]["canary"] == 30
    # Traefik cannot mirror: users get the fallback and the route carries no filter that would fail them.
    route = json.loads(cluster.kubectl("get", "httproute", "bot", "-n", namespace, "-o", "json").stdout)
    assert "filters" not in next(r for r in route["spec"]["rules"] if r["name"] == "split")
    assert "not captured" in switched["history"][-1]["message"]
    described = cluster.kubectl("describe", "mdep", "bot", "-n", namespace).stdout
    assert "KillSwitchEngaged" in described
    wait_until(
        lambda: switch_status(cluster, "killswitch", "incident", namespace).get("deployments")
        == [{"namespace": namespace, "name": "bot", "fallback": "rules", "since": state["engagedAt"],
             "accepted": True}],
        15, "the KillSwitch's status to list the switched deployment, accepted by the Gateway",
    )  # fmt: skip

    # The operator restarting while switched keeps the switch: no flap through the model.
    operator.kill()
    operator.start()
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"], reason="still investigating"))
    wait_status(
        cluster, namespace, "bot", "the new reason", lambda s: s["killSwitch"]["sources"][0]["reason"] == "still "
        "investigating",
    )  # fmt: skip
    assert [h["action"] for h in status(cluster, namespace, "bot")["history"]].count("release") == 0

    cluster.kubectl("delete", "killswitch", "incident", "-n", namespace)
    wait_until(lambda: route_weights(cluster, namespace, "bot") == split, SWITCH_BOUND, "the canary split restored")
    released = status(cluster, namespace, "bot")
    assert (released["phase"], released["currentStep"], released["weights"]["canary"]) == ("Progressing", 0, 30)
    assert released["history"][-1]["action"] == "release"
    wait_until(lambda: send(data_plane, host, 60).share(f"bot-{canary}") > 0, 30, "the canary serving again")


def test_reject_answers_503_with_an_openai_error_body_through_the_gateway(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = with_fallbacks(
        model_deployment("paused", namespace),
        [{"name": "sorry", "reject": {"message": "this assistant is paused", "retryAfter": 17}}],
    )
    manifest["metadata"]["labels"] = {"team": "support"}
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, "paused", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_available(cluster, "paused-reject", namespace)
    wait_serving(data_plane, f"paused.{namespace}.test", f"paused-{stable}")
    usable = wait_status(cluster, namespace, "paused", "fallback usable",
                         lambda s: condition(s, "FallbackAvailable").get("status") == "True")  # fmt: skip
    assert "would route users to sorry" in condition(usable, "FallbackAvailable")["message"]

    apply(cluster, kill_switch("pause-support", namespace, selector={"matchLabels": {"team": "support"}}))
    wait_until(lambda: route_weights(cluster, namespace, "paused") == {"paused-reject": 100}, SWITCH_BOUND,
               "the route at the responder")  # fmt: skip
    request = urllib.request.Request(
        f"{data_plane.gateway_url}/v1/chat/completions", data=b'{"model": "m", "messages": []}', method="POST",
        headers={"Host": f"paused.{namespace}.test", "Content-Type": "application/json"},
    )  # fmt: skip

    def rejected() -> urllib.error.HTTPError | None:
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as error:
            return error if error.code == 503 and error.headers.get("x-served-by", "").startswith("paused-") else None
        return None

    wait_until(lambda: rejected() is not None, SWITCH_BOUND, "a 503 from the responder")
    answer = rejected()
    assert answer is not None
    assert answer.headers["Retry-After"] == "17"
    assert answer.headers["Content-Type"] == "application/json"
    assert json.loads(answer.read())["error"] == {
        "message": "this assistant is paused", "type": "service_unavailable", "param": None,
        "code": "model_unavailable",
    }  # fmt: skip
    report = send(data_plane, f"paused.{namespace}.test", 100)
    assert report.by_status == {503: 100}, report.summary()


NamespaceFactory = Callable[[dict[str, str]], str]


@pytest.fixture
def labelled_namespaces(cluster: Cluster) -> Iterator[tuple[NamespaceFactory, dict[str, str]]]:
    """A label only this test's namespaces carry, and a way to create more; all deleted afterwards."""
    marker = {"ballast-e2e/incident": uuid.uuid4().hex[:8]}
    created: list[str] = []

    def create(labels: dict[str, str]) -> str:
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted", **labels}}}])  # fmt: skip
        created.append(name)
        return name

    yield create, marker
    for name in created:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def rejecting(name: str, namespace: str) -> dict[str, Any]:
    return with_fallbacks(model_deployment(name, namespace, replicas=1), [{"name": "sorry", "reject": {}}])


def test_a_cluster_kill_switch_switches_every_selected_namespace_and_one_created_later(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, labelled_namespaces: Any
) -> None:
    create, marker = labelled_namespaces
    first, second = create(marker), create(marker)
    untouched = create({})
    for namespace in (first, second, untouched):
        apply(cluster, rejecting("bot", namespace))
    for namespace in (first, second):
        wait_available(cluster, "bot-reject", namespace)
    switch = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ClusterKillSwitch",
        "metadata": {"name": f"incident-{marker['ballast-e2e/incident']}"},
        "spec": {"namespaceSelector": {"matchLabels": marker}, "reason": "provider incident"},
    }
    apply(cluster, switch)
    try:
        for namespace in (first, second):
            wait_until(lambda namespace=namespace: route_weights(cluster, namespace, "bot") == {"bot-reject": 100},
                       SWITCH_BOUND, f"{namespace}/bot switched")  # fmt: skip
        later = create(marker)
        apply(cluster, rejecting("bot", later))
        switched = wait_status(cluster, later, "bot", "switched from its first deploy",
                               lambda s: s.get("killSwitch", {}).get("engaged"), timeout=60)  # fmt: skip
        assert switched["killSwitch"]["sources"][0]["kind"] == "ClusterKillSwitch"
        assert route_weights(cluster, later, "bot") == {"bot-reject": 100}
        assert not status(cluster, untouched, "bot").get("killSwitch", {}).get("engaged")
        wait_until(lambda: switch_status(cluster, "clusterkillswitch", switch["metadata"]["name"]).get("matched") == 3,
                   15, "the ClusterKillSwitch to count three")  # fmt: skip
        # A namespace that gains the label is switched as the label lands.
        cluster.kubectl("label", "namespace", untouched, f"ballast-e2e/incident={marker['ballast-e2e/incident']}")
        wait_status(cluster, untouched, "bot", "switched by its new label", lambda s: s["killSwitch"]["engaged"])
    finally:
        cluster.kubectl("delete", "clusterkillswitch", switch["metadata"]["name"], check=False)
    for namespace in (first, second, later, untouched):
        wait_until(lambda namespace=namespace: not status(cluster, namespace, "bot")["killSwitch"]["engaged"],
                   SWITCH_BOUND, f"{namespace}/bot released")  # fmt: skip


def grant(namespace: str, from_namespace: str, kinds: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "fallbacks", "namespace": namespace},
        "spec": {
            "from": [{"group": g, "kind": k, "namespace": from_namespace} for g, k in kinds],
            "to": [{"group": "", "kind": "Service", "name": "rules"}],
        },
    }


def test_a_revoked_reference_grant_moves_traffic_off_the_other_namespace(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, labelled_namespaces: Any
) -> None:
    create, _ = labelled_namespaces
    shared = create({})
    rules_service(cluster, shared)
    md_and_route = [("ballast.dev", "ModelDeployment"), ("gateway.networking.k8s.io", "HTTPRoute")]
    cluster.apply([grant(shared, namespace, md_and_route)])
    manifest = with_fallbacks(
        model_deployment("bot", namespace),
        [{"name": "shared-rules", "service": {"name": "rules", "namespace": shared, "port": 8000}},
         {"name": "sorry", "reject": {}}],
    )  # fmt: skip
    apply(cluster, manifest)
    wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    wait_available(cluster, "bot-reject", namespace)
    host = f"bot.{namespace}.test"
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_until(lambda: served_only_by_prefix(data_plane, host, "rules-"), 15, "users at the other namespace's rules")
    assert route_weights(cluster, namespace, "bot") == {"rules": 100}

    cluster.kubectl("delete", "referencegrant", "fallbacks", "-n", shared)
    wait_until(lambda: route_weights(cluster, namespace, "bot") == {"bot-reject": 100}, SWITCH_BOUND, "traffic off")
    wait_until(lambda: served_only_by_prefix(data_plane, host, "bot-reject-"), SWITCH_BOUND, "users at the responder")
    moved = status(cluster, namespace, "bot")
    assert moved["history"][-1]["reason"] == "FallbackChanged"
    assert f"no ReferenceGrant in namespace {shared}" in moved["history"][-1]["message"]
    # A grant to HTTPRoutes alone is not enough.
    cluster.apply([grant(shared, namespace, md_and_route[1:])])
    wait_until(lambda: "HTTPRoutes alone is not enough" in condition(status(cluster, namespace, "bot"),
                                                                     "FallbackAvailable")["message"],
               15, "the condition to explain the missing grant")  # fmt: skip
    assert route_weights(cluster, namespace, "bot") == {"bot-reject": 100}


def test_bad_references_are_reported_and_leave_traffic_unchanged(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = with_fallbacks(
        model_deployment("bot", namespace),
        [{"name": "rules", "service": {"name": "missing", "port": 8080}},
         {"name": "elsewhere", "service": {"name": "rules", "namespace": "kube-public", "port": 8000}}],
        {"fallback": "rules"},
    )  # fmt: skip
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    reported = wait_status(cluster, namespace, "bot", "FallbackAvailable False",
                           lambda s: condition(s, "FallbackAvailable").get("status") == "False")  # fmt: skip
    message = condition(reported, "FallbackAvailable")["message"]
    assert f"rules: Service {namespace}/missing not found" in message
    assert "elsewhere: no ReferenceGrant in namespace kube-public" in message
    wait_serving(data_plane, f"bot.{namespace}.test", f"bot-{stable}")

    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    refused = wait_status(cluster, namespace, "bot", "refused",
                          lambda s: condition(s, "KillSwitchEngaged").get("reason") == "NoUsableFallback")  # fmt: skip
    assert refused["killSwitch"]["engaged"] is False
    assert refused["history"][-1]["reason"] == "NoUsableFallback"
    assert route_weights(cluster, namespace, "bot") == {f"bot-{stable}": 100}
    wait_serving(data_plane, f"bot.{namespace}.test", f"bot-{stable}")
    wait_until(
        lambda: condition(switch_status(cluster, "killswitch", "incident", namespace), "Ready").get("reason")
        == "CannotSwitch", 15, "the KillSwitch to say it cannot switch bot",
    )  # fmt: skip

    # Fixing the reference engages the switch that was waiting.
    rules_service(cluster, namespace, "missing")
    manifest["spec"]["fallbacks"][0]["service"]["port"] = 8000
    apply(cluster, manifest)
    wait_status(cluster, namespace, "bot", "engaged once the Service exists", lambda s: s["killSwitch"]["engaged"])
    wait_until(lambda: route_weights(cluster, namespace, "bot") == {"missing": 100}, SWITCH_BOUND, "route at rules")


def test_capture_mirrors_to_the_stable_revision_on_a_gateway_that_can_mirror(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, mirroring_gateway: dict[str, str]
) -> None:
    """Proven at the API level: a Gateway class that reports HTTPRouteRequestMirror (Traefik does not)."""
    rules_service(cluster, namespace)
    manifest = with_fallbacks(
        model_deployment("bot", namespace, traffic={"parentRefs": [mirroring_gateway]}),
        [{"name": "rules", "service": {"name": "rules", "port": 8000}}], {"captureTraffic": True},
    )  # fmt: skip
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    state = wait_status(cluster, namespace, "bot", "captured", lambda s: s.get("killSwitch", {}).get("captured"))
    assert state["weights"]["fallbackName"] == "rules"

    def split() -> dict[str, Any]:
        route = json.loads(cluster.kubectl("get", "httproute", "bot", "-n", namespace, "-o", "json").stdout)
        found: dict[str, Any] = next(r for r in route["spec"]["rules"] if r["name"] == "split")
        return found

    wait_until(lambda: split().get("filters") is not None, 15, "the mirror filter")
    assert split()["filters"] == [{"type": "RequestMirror", "requestMirror": {"backendRef": {
        "group": "", "kind": "Service", "name": f"bot-{stable}", "port": 8000}}}]  # fmt: skip
    assert route_weights(cluster, namespace, "bot") == {"rules": 100}
