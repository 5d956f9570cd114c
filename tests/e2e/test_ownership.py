"""Ballast never adopts what it did not create, and refuses references admission cannot judge, with traffic
unchanged: a real API server, the operator under its RBAC identity, real requests through Traefik."""

from __future__ import annotations

import json
from typing import Any

from ballast.api.revision import revision_hash
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import Operator
from ballast.shell.references import OPT_IN_ANNOTATION
from tests.e2e.helpers import (
    GATEWAY_PARENT,
    apply,
    model_deployment,
    send,
    status,
    wait_available,
    wait_serving,
    wait_status,
)
from tests.e2e.manifests import deployment, http_route
from tests.e2e.test_killswitch import kill_switch, with_fallbacks


def body(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
    return result


def exists(cluster: Cluster, kind: str, name: str, namespace: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def condition(state: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in state.get("conditions", []) if c["type"] == kind), {})


def refused(kind: str, reason: str) -> Any:
    return lambda s: (condition(s, kind).get("status"), condition(s, kind).get("reason")) == ("False", reason)


def users_app(cluster: Cluster, namespace: str, service: str) -> None:
    """An app of the user's own, `mine`, behind a Service whose name the test picks."""
    cluster.apply([
        deployment("mine", namespace),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace},
         "spec": {"selector": {"app": "mine"}, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}},
    ])  # fmt: skip
    wait_available(cluster, "mine", namespace)


def test_a_service_and_a_route_with_a_childs_name_are_left_untouched_and_reported(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = model_deployment("own", namespace)
    workload = f"own-{revision_hash(manifest['spec'])}"
    host = f"own.{namespace}.test"
    users_app(cluster, namespace, workload)  # the user's Service holds the name of the revision's Service
    cluster.apply([http_route("own", namespace, host, {workload: 100})])  # and the route the name of Ballast's
    wait_serving(data_plane, host, "mine")
    before = {
        kind: body(cluster, kind, name, namespace) for kind, name in (("service", workload), ("httproute", "own"))
    }

    apply(cluster, manifest)
    state = wait_status(cluster, namespace, "own", "ChildrenOwned False", refused("ChildrenOwned", "NameTaken"))
    message = condition(state, "ChildrenOwned")["message"]
    assert f"Service {workload} exists and was not created by Ballast" in message
    assert "HTTPRoute own exists and was not created by Ballast" in message
    assert condition(state, "RouteAccepted")["reason"] == "NameTaken"
    assert [h["action"] for h in state["history"]] == ["refuse-adoption", "refuse-route"]
    for kind, name in (("service", workload), ("httproute", "own")):
        assert body(cluster, kind, name, namespace)["metadata"] == before[kind]["metadata"]
        assert body(cluster, kind, name, namespace)["spec"] == before[kind]["spec"]
    assert not exists(cluster, "deployment", workload, namespace)
    wait_serving(data_plane, host, "mine")  # traffic unchanged

    # The user removes their objects: Ballast deploys on their deletion events.
    cluster.kubectl("delete", "httproute", "own", "-n", namespace)
    cluster.kubectl("delete", "service", workload, "-n", namespace)
    wait_status(cluster, namespace, "own", "Stable", lambda s: s.get("phase") == "Stable", timeout=30)
    wait_serving(data_plane, host, workload)


def test_a_route_ref_takes_a_rule_only_of_a_route_that_opts_in_and_only_one_claimant_holds_it(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    host = f"shared.{namespace}.test"
    users_app(cluster, namespace, "mine")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shared", "namespace": namespace},
        "spec": {"parentRefs": GATEWAY_PARENT, "hostnames": [host],
                 "rules": [{"name": "model", "backendRefs": [{"name": "mine", "port": 8000}]}]},
    }  # fmt: skip
    cluster.apply([route])
    wait_serving(data_plane, host, "mine")
    traffic = {"routeRef": {"name": "shared", "rule": "model"}}
    apply(cluster, model_deployment("byo", namespace, traffic=traffic, replicas=1))
    state = wait_status(cluster, namespace, "byo", "RouteAccepted NotOptedIn", refused("RouteAccepted", "NotOptedIn"))
    assert f"{OPT_IN_ANNOTATION}: byo" in condition(state, "RouteAccepted")["message"]
    wait_serving(data_plane, host, "mine")  # traffic unchanged
    assert body(cluster, "httproute", "shared", namespace)["metadata"]["generation"] == 1

    cluster.kubectl("annotate", "httproute", "shared", "-n", namespace, f"{OPT_IN_ANNOTATION}=byo,late")
    stable = wait_status(cluster, namespace, "byo", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_until(lambda: condition(status(cluster, namespace, "byo"), "RouteAccepted").get("status") == "True", 30,
               "the route accepted")  # fmt: skip
    wait_serving(data_plane, host, f"byo-{stable}")
    generation = body(cluster, "httproute", "shared", namespace)["metadata"]["generation"]

    apply(cluster, model_deployment("late", namespace, traffic=traffic, replicas=1))
    late = wait_status(cluster, namespace, "late", "RouteAccepted RuleClaimed", refused("RouteAccepted", "RuleClaimed"))
    assert "held by ModelDeployment byo" in condition(late, "RouteAccepted")["message"]
    wait_serving(data_plane, host, f"byo-{stable}")  # traffic unchanged
    # Neither the refused claimant nor byo's reconciles rewrite the route: it is as byo last wrote it.
    assert body(cluster, "httproute", "shared", namespace)["metadata"]["generation"] == generation


def test_fallbacks_that_are_ballast_models_and_derived_name_collisions_are_refused_with_traffic_unchanged(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    """A fallback that is another deployment's revision or responder, a fallback cycle between deployments, and
    `big-reject` (service router) beside the responder of `big`: each a condition; traffic stays put."""
    big = with_fallbacks(model_deployment("big", namespace, replicas=1), [{"name": "sorry", "reject": {}}])
    apply(cluster, big)
    big_revision = wait_status(cluster, namespace, "big", "Stable", lambda s: s.get("phase") == "Stable")
    wait_available(cluster, "big-reject", namespace)
    responder = body(cluster, "service", "big-reject", namespace)
    bad = [
        {"name": "revision", "service": {"name": f"big-{big_revision['stableRevision']}", "port": 8000}},
        {"name": "responder", "service": {"name": "big-reject", "port": 8080}},
    ]
    team = {"team": "ownership"}
    cluster.apply([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"to-{other}", "namespace": namespace},
         "spec": {"selector": {"ballast.dev/deployment": other}, "ports": [{"port": 8000}]}}
        for other in ("a", "b")
    ])  # fmt: skip
    deployments = {
        "small": with_fallbacks(model_deployment("small", namespace, replicas=1), bad, {"fallback": "revision"}),
        "a": with_fallbacks(model_deployment("a", namespace, replicas=1), [{"name": "b", "service": {"name": "to-b",
                            "port": 8000}}], {}),
        "b": with_fallbacks(model_deployment("b", namespace, replicas=1), [{"name": "a", "service": {"name": "to-a",
                            "port": 8000}}], {}),
    }  # fmt: skip
    stables = {}
    for manifest in deployments.values():
        manifest["metadata"]["labels"] = team
        apply(cluster, manifest)
    for name in deployments:
        stables[name] = wait_status(cluster, namespace, name, "Stable", lambda s: s.get("phase") == "Stable")
        wait_serving(data_plane, f"{name}.{namespace}.test", f"{name}-{stables[name]['stableRevision']}")
    apply(cluster, kill_switch("incident", namespace, selector={"matchLabels": team}))
    apply(cluster, model_deployment("big-reject", namespace, traffic={"router": "service"}, replicas=1))

    def kill_refused(state: dict[str, Any]) -> bool:
        return condition(state, "KillSwitchEngaged").get("reason") == "NoUsableFallback"

    small = wait_status(cluster, namespace, "small", "the switch refused", kill_refused)
    message = condition(small, "FallbackAvailable")["message"]
    assert f"is revision {big_revision['stableRevision']} of ModelDeployment big" in message
    assert "is the reject responder of ModelDeployment big" in message
    for name in ("a", "b"):
        state = wait_status(cluster, namespace, name, "the switch refused", kill_refused)
        other = "b" if name == "a" else "a"
        cycle = f"({namespace}/{name} -> {namespace}/{other} -> {namespace}/{name})"
        assert cycle in condition(state, "FallbackAvailable")["message"]
        assert "a fallback cycle" in condition(state, "FallbackAvailable")["message"]
    for name in deployments:  # traffic unchanged
        wait_serving(data_plane, f"{name}.{namespace}.test", f"{name}-{stables[name]['stableRevision']}")
        assert status(cluster, namespace, name)["weights"]["stable"] == 100

    collided = wait_status(cluster, namespace, "big-reject", "a name conflict", refused("ChildrenOwned", "NameTaken"))
    assert "Service big-reject belongs to ModelDeployment big" in condition(collided, "ChildrenOwned")["message"]
    assert condition(collided, "RouteAccepted")["reason"] == "NameTaken"
    after = body(cluster, "service", "big-reject", namespace)
    assert (after["metadata"], after["spec"]) == (responder["metadata"], responder["spec"])
    wait_serving(data_plane, f"big.{namespace}.test", f"big-{big_revision['stableRevision']}")


def test_a_new_model_name_is_a_canary_and_the_stable_pods_are_not_touched(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, model_deployment("named", namespace, replicas=1))
    stable = wait_status(cluster, namespace, "named", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_available(cluster, f"named-{stable}", namespace)
    before = body(cluster, "deployment", f"named-{stable}", namespace)
    patch = {"spec": {"model": {"name": "sim-model-2"}, "traffic": {"port": 9000}}}
    cluster.kubectl("patch", "mdep", "named", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    state = wait_status(cluster, namespace, "named", "a canary", lambda s: s.get("canaryRevision"))
    canary = state["canaryRevision"]
    assert state["history"][-1]["action"] == "canary"
    wait_available(cluster, f"named-{canary}", namespace)
    after = body(cluster, "deployment", f"named-{stable}", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    pod = body(cluster, "deployment", f"named-{canary}", namespace)["spec"]["template"]
    assert pod["metadata"]["labels"]["ballast.dev/model"] == "sim-model-2"
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 9000

    # The route reaches each revision on its own port, and both answer: the stable on 8000, the canary on 9000.
    def ports() -> dict[str, int]:
        rules = body(cluster, "httproute", "named", namespace)["spec"]["rules"]
        split = next(r for r in rules if r["name"] == "split")
        return {ref["name"]: ref["port"] for ref in split["backendRefs"]}

    wait_until(lambda: ports() == {f"named-{stable}": 8000, f"named-{canary}": 9000}, 30, "both revisions routed")
    report = send(data_plane, f"named.{namespace}.test", 100)
    assert report.by_status == {200: report.sent}, report.summary()
    assert {b.rsplit("-", 2)[0] for b in report.by_backend} == {f"named-{stable}", f"named-{canary}"}
