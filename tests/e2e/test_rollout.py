"""The reconcile core end to end: the operator under its RBAC identity, real requests through the Gateway."""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import LoadReport
from ballast.devstack.operator_process import Operator
from tests.e2e.manifests import RESTRICTED

GATEWAY_PARENT = [{"name": "ai-gateway", "namespace": "gateway-system"}]


def model_deployment(
    name: str,
    namespace: str,
    *,
    latency: str = "0.01",
    steps: list[dict[str, Any]] | None = None,
    traffic: dict[str, Any] | None = None,
    replicas: int = 2,
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "name": "sim-model",
                "image": "model-server:simulated",
                "replicas": replicas,
                "env": [{"name": "SIM_LATENCY", "value": latency}],
            },
            "traffic": traffic or {"parentRefs": GATEWAY_PARENT, "hostnames": [f"{name}.{namespace}.test"]},
            "rollout": {
                "interval": "2s",
                "steps": steps or [{"weight": 30, "approval": True}, {"weight": 100}],
                **(rollout or {}),
            },
        },
    }


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body = json.loads(cluster.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout)
    result: dict[str, Any] = body.get("status") or {}
    return result


def wait_status(
    cluster: Cluster, namespace: str, name: str, what: str, check: Any, timeout: float = 60
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def holds() -> bool:
        seen.clear()
        seen.update(status(cluster, namespace, name))
        return bool(check(seen))

    wait_until(holds, timeout, f"{namespace}/{name}: {what}")
    return seen


def route_weights(cluster: Cluster, namespace: str, route: str, rule: str = "split") -> dict[str, int]:
    body = json.loads(cluster.kubectl("get", "httproute", route, "-n", namespace, "-o", "json").stdout)
    found = next(r for r in body["spec"]["rules"] if r.get("name") == rule)
    return {ref["name"]: ref["weight"] for ref in found["backendRefs"]}


def wait_exists(cluster: Cluster, kind: str, name: str, namespace: str) -> None:
    """Status is written before the children are applied: wait for the object itself."""
    wait_until(
        lambda: cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0,
        30,
        f"{kind} {namespace}/{name} to exist",
    )


def wait_available(cluster: Cluster, deployment: str, namespace: str) -> None:
    """Poll (kubectl wait fails at once on a Deployment that is being recreated)."""

    def available() -> bool:
        result = cluster.kubectl("get", "deployment", deployment, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    wait_until(available, 60, f"deployment {namespace}/{deployment} to be Available")


def send(data_plane: DataPlane, host: str, total: int = 200) -> LoadReport:
    return loadgen.run(
        f"{data_plane.gateway_url}/v1/chat/completions",
        total=total,
        rate=400,
        concurrency=16,
        host=host,
        max_seconds=60,
    )


def served_only_by(report: LoadReport, workload: str) -> bool:
    return report.by_status == {200: report.sent} and all(b.startswith(f"{workload}-") for b in report.by_backend)


def wait_serving(data_plane: DataPlane, host: str, workload: str) -> None:
    wait_until(lambda: served_only_by(send(data_plane, host, 20), workload), 30, f"{host} served only by {workload}")


def change_template(cluster: Cluster, namespace: str, name: str, latency: str) -> None:
    patch = {"spec": {"model": {"env": [{"name": "SIM_LATENCY", "value": latency}]}}}
    cluster.kubectl("patch", "mdep", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def annotate(cluster: Cluster, namespace: str, name: str, annotation: str) -> None:
    cluster.kubectl("annotate", "mdep", name, "-n", namespace, "--overwrite", annotation)


def start_canary(cluster: Cluster, data_plane: DataPlane, namespace: str, name: str) -> tuple[str, str]:
    """Deploy, wait until served, change the template; return (stable, canary) once at the first step."""
    apply(cluster, model_deployment(name, namespace))
    first = wait_status(cluster, namespace, name, "Stable", lambda s: s.get("phase") == "Stable")
    stable = first["stableRevision"]
    wait_serving(data_plane, f"{name}.{namespace}.test", f"{name}-{stable}")
    change_template(cluster, namespace, name, "0.02")
    at_step = wait_status(cluster, namespace, name, "canary at 30%", lambda s: s.get("weights", {}).get("canary") == 30)
    return stable, at_step["canaryRevision"]


def test_first_deploy_serves_everything_from_its_revision(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, model_deployment("bot", namespace))
    done = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    revision = done["stableRevision"]
    assert done["weights"] == {"stable": 100, "canary": 0, "fallback": 0}
    wait_available(cluster, f"bot-{revision}", namespace)
    wait_serving(data_plane, f"bot.{namespace}.test", f"bot-{revision}")
    report = send(data_plane, f"bot.{namespace}.test", 200)
    assert served_only_by(report, f"bot-{revision}"), report.summary()
    assert len(report.by_backend) == 2  # both replicas serve


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
    actions = [h["action"] for h in done["history"]]
    assert actions == ["deploy", "canary", "step", "step", "promote"]
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


def test_a_canary_that_never_becomes_ready_is_rolled_back_at_its_deadline(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = model_deployment("stuck", namespace, rollout={"progressDeadline": "8s"})
    apply(cluster, manifest)
    first = wait_status(cluster, namespace, "stuck", "Stable", lambda s: s.get("phase") == "Stable")
    # A template whose pods can never be scheduled: the canary never becomes Available.
    manifest["spec"]["model"].pop("image")
    manifest["spec"]["model"].pop("env")
    manifest["spec"]["model"]["template"] = {
        "spec": {
            "nodeSelector": {"ballast.dev/no-such-node": "true"},
            "containers": [{"name": "server", "image": "model-server:simulated", "securityContext": RESTRICTED,
                            "ports": [{"containerPort": 8000}]}],
        }
    }  # fmt: skip
    apply(cluster, manifest)
    rolled = wait_status(
        cluster, namespace, "stuck", "RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=30
    )
    assert rolled["history"][-1]["reason"] == "ProgressDeadlineExceeded"
    assert rolled["stableRevision"] == first["stableRevision"]
    started = next(h for h in rolled["history"] if h["action"] == "canary")["at"]
    assert started < rolled["history"][-1]["at"]


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
    cluster.kubectl(
        "wait", f"deployment/heal-{revision}", "-n", namespace, "--for=condition=Available", "--timeout=60s"
    )
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
        "metadata": {"name": "mine", "namespace": namespace, "labels": {"team": "a"}, "annotations": {"note": "x"}},
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
    cluster.kubectl(
        "wait", f"deployment/gone-{revision}", "-n", namespace, "--for=condition=Available", "--timeout=60s"
    )
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
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    """Proven at the API level: the real Gateway API schema accepts the mirror (Traefik cannot mirror)."""
    apply(cluster, model_deployment("shadow", namespace, rollout={"shadow": {"duration": "6s"}}))
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
