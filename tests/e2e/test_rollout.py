"""The reconcile core end to end: the operator under its RBAC identity, real requests through the Gateway."""

from __future__ import annotations

import json
import math
from typing import Any

from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import LoadReport
from ballast.devstack.operator_process import Operator
from tests import claims
from tests.e2e.helpers import (
    GATEWAY_PARENT,
    annotate,
    apply,
    change_template,
    model_deployment,
    route_weights,
    send,
    served_only_by,
    start_canary,
    status,
    wait_available,
    wait_exists,
    wait_revisions_match_deployments,
    wait_serving,
    wait_status,
)
from tests.e2e.manifests import RESTRICTED


def test_first_deploy_serves_everything_from_its_revision(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, model_deployment("bot", namespace))
    done = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    revision = done["stableRevision"]
    assert done["weights"] == {"stable": 100, "canary": 0, "fallback": 0}
    wait_available(cluster, f"bot-{revision}", namespace)
    (reported,) = wait_revisions_match_deployments(cluster, namespace, "bot")
    assert (reported["workload"], reported["readyReplicas"]) == (f"bot-{revision}", 2)
    wait_serving(data_plane, f"bot.{namespace}.test", f"bot-{revision}")
    report = send(data_plane, f"bot.{namespace}.test", 200)
    assert served_only_by(report, f"bot-{revision}"), report.summary()
    assert len(report.by_backend) == 2  # both replicas serve


def test_a_budget_action_nothing_takes_yet_is_named_by_a_condition_until_it_goes(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    manifest = model_deployment("spend", namespace)
    manifest["spec"]["fallbacks"] = [{"name": "sorry", "reject": {}}]
    shift = {"action": "shift", "share": 50, "to": "sorry"}
    budgeted = {**manifest, "spec": {**manifest["spec"], "budgets": {"tokensPerMinute": 1000, "whenExceeded": shift}}}
    apply(cluster, budgeted)

    def acting(s: dict[str, Any]) -> dict[str, Any] | None:
        return next((c for c in s.get("conditions", []) if c["type"] == "BudgetActionActive"), None)

    named = acting(wait_status(cluster, namespace, "spend", "BudgetActionActive", lambda s: acting(s) is not None))
    assert named is not None
    assert (named["status"], named["reason"]) == ("False", "NotImplemented")
    assert named["message"].startswith("spec.budgets.whenExceeded.action shift is not acted on yet")
    cluster.kubectl("patch", "mdep", "spend", "-n", namespace, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/budgets"}]')  # fmt: skip
    wait_status(cluster, namespace, "spend", "no BudgetActionActive", lambda s: s.get("phase") and acting(s) is None)


def test_a_template_change_walks_the_steps_and_the_split_follows(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    stable, canary = start_canary(cluster, data_plane, namespace, "walk")
    host = f"walk.{namespace}.test"
    expected = {f"walk-{stable}": 70, f"walk-{canary}": 30}
    wait_until(lambda: route_weights(cluster, namespace, "walk") == expected, 30, f"the route to carry {expected}")
    wait_available(cluster, f"walk-{canary}", namespace)
    wait_until(lambda: send(data_plane, host, 40).share(f"walk-{canary}") > 0, 30, "the canary to receive requests")
    report = send(data_plane, host, 600)
    observed = sum(n for b, n in report.by_backend.items() if b.startswith(f"walk-{canary}-"))
    # Binomial(600, 0.3): sd 11.2; four of them.
    assert abs(observed - 180) <= 4 * math.sqrt(600 * 0.3 * 0.7), report.summary()

    table = cluster.kubectl("get", "mdep", "walk", "-n", namespace).stdout
    assert "Progressing" in table
    assert stable in table
    assert canary in table
    assert " 30 " in table

    annotate(cluster, namespace, "walk", "ballast.dev/promote=step-1")
    done = wait_status(
        cluster,
        namespace,
        "walk",
        "promoted",
        lambda s: s.get("phase") == "Stable" and s.get("stableRevision") == canary,
    )
    assert done["previousRevision"] == stable
    wait_serving(data_plane, host, f"walk-{canary}")
    revisions = wait_revisions_match_deployments(cluster, namespace, "walk")
    assert {r["role"]: r["readyReplicas"] for r in revisions} == {"stable": 2, "previous": 2}
    actions = [h["action"] for h in done["history"]]
    # Approved by annotation (its writer unrecorded), the canary runs one replica at 30% of 2 and scales up to two
    # before it serves 100%.
    assert actions == ["deploy", "canary", "step", "approve", "scale-up", "step", "promote"]
    described = cluster.kubectl("describe", "mdep", "walk", "-n", namespace).stdout
    for reason in ("Deployed", "CanaryStarted", "StepStarted", "Promoted"):
        assert reason in described


def test_abort_returns_all_traffic_to_stable_within_one_reconcile(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    stable, _ = start_canary(cluster, data_plane, namespace, "abort")
    annotate(cluster, namespace, "abort", "ballast.dev/abort=now")
    after = wait_status(cluster, namespace, "abort", "RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=10)
    assert after["weights"]["stable"] == 100
    assert after["history"][-1]["reason"] == "Aborted"
    wait_until(lambda: route_weights(cluster, namespace, "abort") == {f"abort-{stable}": 100}, 10, "100% stable")
    wait_serving(data_plane, f"abort.{namespace}.test", f"abort-{stable}")


def _with_template(manifest: dict[str, Any], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its image shorthand replaced by a pod template (a new revision)."""
    model = {k: v for k, v in manifest["spec"]["model"].items() if k not in ("image", "env")}
    return {**manifest, "spec": {**manifest["spec"], "model": {**model, "template": {"spec": pod_spec}}}}


def test_a_canary_that_never_becomes_ready_is_rolled_back_at_its_deadline(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = model_deployment("stuck", namespace, rollout={"progressDeadline": "8s"})
    apply(cluster, manifest)
    first = wait_status(cluster, namespace, "stuck", "Stable", lambda s: s.get("phase") == "Stable")
    # A template whose pods can never be scheduled: the canary never becomes Available.
    container = {"name": "server", "image": "model-server:simulated", "securityContext": RESTRICTED,
                 "ports": [{"containerPort": 8000}]}  # fmt: skip
    apply(
        cluster,
        _with_template(manifest, {"nodeSelector": {"ballast.dev/no-such-node": "true"}, "containers": [container]}),
    )
    rolled = wait_status(
        cluster, namespace, "stuck", "RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=30
    )
    assert rolled["stableRevision"] == first["stableRevision"]
    claims.rolled_back_at_deadline(rolled["history"], deadline=8, slack=20)  # slack: a loaded machine's tick


def test_a_canary_refused_by_pod_security_is_rolled_back_with_the_reason_not_retried(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = model_deployment("refused", namespace)  # progressDeadline stays at its default, 15m
    apply(cluster, manifest)
    first = wait_status(cluster, namespace, "refused", "Stable", lambda s: s.get("phase") == "Stable")
    # A template without the restricted security context: Pod Security Admission refuses its pods.
    container = {"name": "server", "image": "model-server:simulated", "ports": [{"containerPort": 8000}]}
    apply(cluster, _with_template(manifest, {"containers": [container]}))
    rolled = wait_status(
        cluster, namespace, "refused", "RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=60
    )
    last = rolled["history"][-1]
    assert last["reason"] == "PodsRefused"
    assert 'violates PodSecurity "restricted:latest"' in last["message"]
    assert rolled["stableRevision"] == first["stableRevision"]
    degraded = next(c for c in rolled["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "PodSecurity" in degraded["message"]
    # Not retried: the refused revision is scaled to zero.
    canary = next(r for r in rolled["revisions"] if r["name"] == last["revision"])
    assert canary["replicas"] == 0


def test_an_operator_killed_mid_canary_resumes_at_the_same_step(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    _, canary = start_canary(cluster, data_plane, namespace, "resume")
    before = status(cluster, namespace, "resume")
    operator.kill()
    operator.start()
    # Let the restarted operator observe everything, then ask it to act once more.
    annotate(cluster, namespace, "resume", "ballast.dev/paused=true")
    paused = wait_status(cluster, namespace, "resume", "Paused", lambda s: s.get("phase") == "Paused")
    assert paused["currentStep"] == before["currentStep"] == 0
    assert paused["weights"] == before["weights"]
    ids = [h["id"] for h in paused["history"]]
    assert len(ids) == len(set(ids))
    assert ids[: len(before["history"])] == [h["id"] for h in before["history"]]
    annotate(cluster, namespace, "resume", "ballast.dev/paused-")
    annotate(cluster, namespace, "resume", "ballast.dev/promote=go")
    wait_status(cluster, namespace, "resume", "promoted", lambda s: s.get("stableRevision") == canary)


def test_deleted_children_are_recreated(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, model_deployment("heal", namespace))
    revision = wait_status(cluster, namespace, "heal", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_serving(data_plane, f"heal.{namespace}.test", f"heal-{revision}")
    cluster.kubectl("delete", "httproute", "heal", "-n", namespace)
    cluster.kubectl("delete", "deployment", f"heal-{revision}", "-n", namespace)
    wait_available(cluster, f"heal-{revision}", namespace)  # polls: `kubectl wait` fails on a missing object
    wait_until(
        lambda: cluster.kubectl("get", "httproute", "heal", "-n", namespace, check=False).returncode == 0,
        30,
        "the HTTPRoute to be recreated",
    )
    wait_serving(data_plane, f"heal.{namespace}.test", f"heal-{revision}")


def test_the_service_router_splits_by_replicas(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(
        cluster,
        model_deployment(
            "svc", namespace, replicas=4, traffic={"router": "service"},
            steps=[{"weight": 25, "approval": True}, {"weight": 100}],
        ),
    )  # fmt: skip
    stable = wait_status(cluster, namespace, "svc", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_exists(cluster, "service", "svc", namespace)
    service = json.loads(cluster.kubectl("get", "service", "svc", "-n", namespace, "-o", "json").stdout)
    url = f"http://{service['spec']['clusterIP']}:8000/v1/completions"

    def split(total: int) -> LoadReport:
        # A new connection per request: the local kube-proxy balances connections.
        return loadgen.run(url, total=total, rate=200, concurrency=4, headers={"Connection": "close"}, max_seconds=30)

    wait_available(cluster, f"svc-{stable}", namespace)
    wait_until(lambda: len(split(40).by_backend) == 4, 30, "four stable replicas behind the Service")
    change_template(cluster, namespace, "svc", "0.02")
    at_step = wait_status(
        cluster, namespace, "svc", "canary at 25%", lambda s: s.get("weights", {}).get("canary") == 25
    )
    canary = at_step["canaryRevision"]
    replicas = {r["name"]: r["replicas"] for r in at_step["revisions"]}
    assert replicas == {stable: 3, canary: 1}
    wait_available(cluster, f"svc-{canary}", namespace)
    wait_until(
        lambda: split(40).share(f"svc-{canary}") > 0 and cluster.kubectl(
            "get", "deployment", f"svc-{stable}", "-n", namespace, "-o", "jsonpath={.status.readyReplicas}"
        ).stdout == "3",
        30, "three stable and one canary replica serving",
    )  # fmt: skip
    report = split(200)
    assert abs(report.share(f"svc-{canary}") - 0.25) <= 0.1, report.summary()


def test_a_route_ref_route_keeps_every_rule_ballast_does_not_own(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    own_rule = {
        "name": "docs",
        "matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-team", "value": "a"}]}}
        ],
        "backendRefs": [{"name": "docs-site", "port": 8080, "weight": 7}],
    }  # fmt: skip
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "mine",
            "namespace": namespace,
            "labels": {"team": "a"},
            "annotations": {"note": "x", "ballast.dev/model-deployments": "byo"},
        },
        "spec": {
            "parentRefs": GATEWAY_PARENT,
            "hostnames": [f"mine.{namespace}.test"],
            "rules": [own_rule, {"name": "model", "backendRefs": [{"name": "placeholder", "port": 8000}]}],
        },
    }
    apply(cluster, route)
    before = json.loads(cluster.kubectl("get", "httproute", "mine", "-n", namespace, "-o", "json").stdout)
    apply(cluster, model_deployment("byo", namespace, traffic={"routeRef": {"name": "mine", "rule": "model"}}))
    revision = wait_status(cluster, namespace, "byo", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_until(lambda: route_weights(cluster, namespace, "mine", "model") == {f"byo-{revision}": 100}, 30, "owned rule")
    after = json.loads(cluster.kubectl("get", "httproute", "mine", "-n", namespace, "-o", "json").stdout)
    assert after["spec"]["rules"][0] == before["spec"]["rules"][0]
    for key in ("parentRefs", "hostnames"):
        assert after["spec"][key] == before["spec"][key]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert "ownerReferences" not in after["metadata"]
    wait_serving(data_plane, f"mine.{namespace}.test", f"byo-{revision}")


def test_deleting_never_waits_for_the_operator(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    """No finalizers: with the operator gone, a ModelDeployment deletes at once and its children follow."""
    apply(cluster, model_deployment("gone", namespace))
    revision = wait_status(cluster, namespace, "gone", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_available(cluster, f"gone-{revision}", namespace)  # status is written before the Deployment exists
    body = json.loads(cluster.kubectl("get", "mdep", "gone", "-n", namespace, "-o", "json").stdout)
    assert "finalizers" not in body["metadata"]
    operator.kill()
    try:
        cluster.kubectl("delete", "mdep", "gone", "-n", namespace, "--wait=true", "--timeout=10s")
        for kind in ("deployment", "service", "httproute", "controllerrevision"):
            name = "gone" if kind == "httproute" else f"gone-{revision}"
            wait_until(
                lambda kind=kind, name=name: (
                    cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0
                ),
                30,
                f"{kind} {name} to be garbage-collected",
            )
    finally:
        operator.start()


def test_shadow_writes_a_request_mirror_to_the_canary_then_steps(
    cluster: Cluster, operator: Operator, namespace: str, mirroring_gateway: dict[str, str]
) -> None:
    """Proven at the API level, on a Gateway whose class reports HTTPRouteRequestMirror (Traefik cannot mirror)."""
    traffic = {"parentRefs": [mirroring_gateway], "hostnames": [f"shadow.{namespace}.test"]}
    apply(cluster, model_deployment("shadow", namespace, traffic=traffic, rollout={"shadow": {"duration": "6s"}}))
    stable = wait_status(cluster, namespace, "shadow", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    change_template(cluster, namespace, "shadow", "0.02")
    mirrored = wait_status(cluster, namespace, "shadow", "shadow phase", lambda s: s.get("mirrorRevision"))
    canary = mirrored["canaryRevision"]
    assert mirrored["weights"]["canary"] == 0

    def mirror_filter() -> list[dict[str, Any]]:
        body = json.loads(cluster.kubectl("get", "httproute", "shadow", "-n", namespace, "-o", "json").stdout)
        split = next(r for r in body["spec"]["rules"] if r["name"] == "split")
        return list(split.get("filters", []))

    expected = [{"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service",
                 "name": f"shadow-{canary}", "port": 8000}}}]  # fmt: skip
    wait_until(lambda: mirror_filter() == expected, 30, "the RequestMirror filter on the split rule")
    after = wait_status(cluster, namespace, "shadow", "first step", lambda s: s.get("currentStep") == 0, timeout=30)
    assert after.get("mirrorRevision") is None
    assert [h["action"] for h in after["history"]][-2:] == ["shadow", "step"]
    wait_until(lambda: mirror_filter() == [], 30, "the mirror to be removed")
    assert route_weights(cluster, namespace, "shadow") == {f"shadow-{stable}": 70, f"shadow-{canary}": 30}


def test_shadow_is_skipped_on_a_gateway_that_cannot_mirror(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    """Traefik reports no HTTPRouteRequestMirror and would fail every request of a rule carrying one."""
    apply(cluster, model_deployment("noshadow", namespace, rollout={"shadow": {"duration": "6s"}}))
    wait_status(cluster, namespace, "noshadow", "Stable", lambda s: s.get("phase") == "Stable")
    change_template(cluster, namespace, "noshadow", "0.02")
    stepped = wait_status(cluster, namespace, "noshadow", "first step", lambda s: s.get("currentStep") == 0)
    assert stepped.get("mirrorRevision") is None
    skipped = next(h for h in stepped["history"] if h["action"] == "shadow-skipped")
    assert "HTTPRouteRequestMirror" in skipped["message"]
    wait_until(lambda: all_answered(data_plane, f"noshadow.{namespace}.test"), 30, "every request served")


def all_answered(data_plane: DataPlane, host: str) -> bool:
    report = send(data_plane, host, 40)
    return report.by_status == {200: report.sent}
