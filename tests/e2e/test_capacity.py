"""Capacity-aware rollouts on a kwok node that offers a few `nvidia.com/gpu`, with model pods that request one each.

Each test gets a GPU node of its own (tainted and labelled for its namespace only), so the GPUs it counts are
exactly the ones it declares.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import LoadReport
from ballast.devstack.operator_process import Operator
from tests.e2e.helpers import (
    GATEWAY_PARENT,
    apply,
    route_weights,
    wait_serving,
    wait_status,
)
from tests.e2e.manifests import RESTRICTED

GPU = "nvidia.com/gpu"


class GpuNode:
    """A kwok node with `gpus` GPUs that only one namespace's pods may use."""

    def __init__(self, cluster: Cluster, namespace: str, gpus: int) -> None:
        self.cluster, self.name, self.key = cluster, f"gpu-{namespace}", "ballast.dev/gpu-test"
        self.namespace = namespace
        taint = {"key": self.key, "value": namespace, "effect": "NoSchedule"}
        cluster.add_node(self.name, extra_capacity={GPU: str(gpus)}, labels={self.key: namespace}, taints=[taint])

    def set_gpus(self, gpus: int) -> None:
        """More (or fewer) GPUs, as when another team's job ends."""
        capacity = {GPU: str(gpus)}
        patch = {"status": {"capacity": capacity, "allocatable": capacity}}
        self.cluster.kubectl(
            "patch", "node", self.name, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
        )

    def pod_spec(self, latency: str) -> dict[str, Any]:
        container = {
            "name": "server",
            "image": "model-server:simulated",
            "securityContext": RESTRICTED,
            "ports": [{"name": "http", "containerPort": 8000}],
            "env": [{"name": "SIM_LATENCY", "value": latency}],
            "resources": {"limits": {GPU: "1"}},
        }
        return {
            "nodeSelector": {self.key: self.namespace},
            "tolerations": [{"key": self.key, "operator": "Equal", "value": self.namespace, "effect": "NoSchedule"}],
            "containers": [container],
        }

    def delete(self) -> None:
        self.cluster.kubectl("delete", "node", self.name, "--wait=false", check=False)


@pytest.fixture
def gpu_node(cluster: Cluster, namespace: str) -> Iterator[GpuNode]:
    node = GpuNode(cluster, namespace, gpus=3)
    yield node
    node.delete()


def gpu_model(name: str, namespace: str, node: GpuNode, latency: str, rollout: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "sim-model", "replicas": 2, "template": {"spec": node.pod_spec(latency)}},
            "traffic": {"parentRefs": GATEWAY_PARENT, "hostnames": [f"{name}.{namespace}.test"]},
            "rollout": {"interval": "1s", **rollout},
        },
    }


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def events(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e["message"] for e in listed if e.get("reason") == reason]


def test_a_canary_runs_within_the_spare_gpus_and_one_that_cannot_be_scheduled_holds_then_rolls_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, gpu_node: GpuNode
) -> None:
    """3 GPUs, 2 replicas of one GPU each: a full-size canary would need 4. At 50% it runs one replica (3 GPUs
    in all) and serves; at 100% it needs a second one that no GPU is left for: it holds, says so, and is
    rolled back at progressDeadline with the stable untouched."""
    rollout = {"progressDeadline": "20s", "steps": [{"weight": 50, "approval": True}, {"weight": 100}]}
    manifest = gpu_model("gpus", namespace, gpu_node, "0.01", rollout)
    apply(cluster, manifest)
    first = wait_status(cluster, namespace, "gpus", "Stable", lambda s: s.get("phase") == "Stable", timeout=60)
    stable = first["stableRevision"]
    host = f"gpus.{namespace}.test"
    wait_serving(data_plane, host, f"gpus-{stable}")

    apply(cluster, gpu_model("gpus", namespace, gpu_node, "0.02", rollout))
    at_half = wait_status(
        cluster, namespace, "gpus", "canary at 50%", lambda s: s.get("weights", {}).get("canary") == 50, timeout=60
    )
    canary = at_half["canaryRevision"]
    sizes = {r["name"]: (r["replicas"], r["requestedGPUs"]) for r in at_half["revisions"]}
    assert sizes == {stable: (2, 2), canary: (1, 1)}, at_half["revisions"]
    assert at_half["capacity"]["requestedGPUs"] == 3
    assert condition(at_half, "CapacityAvailable")["status"] == "True"
    wait_until(
        lambda: loadgen.run(f"{data_plane.gateway_url}/v1/chat/completions", total=40, rate=400, concurrency=8,
                            host=host, max_seconds=30).share(f"gpus-{canary}") > 0,
        30, "the canary to serve within the spare GPUs",
    )  # fmt: skip

    cluster.kubectl("annotate", "mdep", "gpus", "-n", namespace, "--overwrite", "ballast.dev/promote=go")
    held = wait_status(
        cluster, namespace, "gpus", "CapacityAvailable False",
        lambda s: condition(s, "CapacityAvailable").get("status") == "False", timeout=30,
    )  # fmt: skip
    short = condition(held, "CapacityAvailable")
    assert short["reason"] == "Unschedulable"
    assert GPU in short["message"], short
    assert "1 of 2 pods unschedulable" in short["message"], short
    assert held["weights"]["canary"] == 50  # the weight waits for the replicas
    assert (held["scaling"]["weight"], held["scaling"]["replicas"]) == (100, 2)
    table = cluster.kubectl("get", "mdep", "gpus", "-n", namespace).stdout
    assert "Unschedulable" in table, table
    wait_until(lambda: any(GPU in m for m in events(cluster, namespace, "Unschedulable")), 20, "an Event")
    assert route_weights(cluster, namespace, "gpus") == {f"gpus-{stable}": 50, f"gpus-{canary}": 50}

    rolled = wait_status(cluster, namespace, "gpus", "RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=60)
    last = next(h for h in rolled["history"] if h["action"] == "rollback")
    assert last["reason"] == "ProgressDeadlineExceeded", last
    assert GPU in last["message"], last
    scaling = next(h for h in rolled["history"] if h["reason"] == "ScalingUp")
    assert (scaling["values"]["readyReplicas"], scaling["values"]["neededReplicas"]) == (1.0, 2.0)
    waited = _seconds(last["at"]) - _seconds(scaling["at"])
    assert 20 <= waited <= 40, (scaling, last)  # held for progressDeadline, then rolled back
    assert rolled["stableRevision"] == stable
    wait_until(lambda: route_weights(cluster, namespace, "gpus") == {f"gpus-{stable}": 100}, 20, "100% stable")
    wait_serving(data_plane, host, f"gpus-{stable}")


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class SteadyLoad:
    """Real requests through the Gateway in the background, in bounded rounds, until stopped."""

    def __init__(self, data_plane: DataPlane, host: str) -> None:
        self.url, self.host = f"{data_plane.gateway_url}/v1/chat/completions", host
        self.reports: list[LoadReport] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set() and len(self.reports) < 400:
            self.reports.append(
                loadgen.run(self.url, total=20, rate=100, concurrency=4, host=self.host, max_seconds=10)
            )

    def stop(self) -> dict[int, int]:
        self.stopped.set()
        self.thread.join(timeout=30)
        totals: dict[int, int] = {}
        for report in self.reports:
            for code, count in report.by_status.items():
                totals[code] = totals.get(code, 0) + count
        return totals

    def served_by(self, workload: str) -> int:
        return sum(n for r in self.reports for b, n in r.by_backend.items() if b.startswith(f"{workload}-"))


def test_a_rollback_after_scale_down_waits_for_gpus_and_sends_no_request_before_the_pods_are_ready(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, gpu_node: GpuNode
) -> None:
    """Revision A promoted away and scaled down; B holds 2 of the node's GPUs. Going back to A (a revert in Git)
    needs A scaled up from zero: with no GPU left its pod is Pending, A gets no traffic and every request is
    answered by B; once a GPU frees up, A's pod becomes ready and only then does A get its share."""
    rollout = {"progressDeadline": "5m", "scaleDownDelay": "0s", "steps": [{"weight": 50}, {"weight": 100}]}
    host = f"back.{namespace}.test"
    gpu_node.set_gpus(4)  # room for the canary's second replica at 100%
    apply(cluster, gpu_model("back", namespace, gpu_node, "0.01", rollout))
    a = wait_status(cluster, namespace, "back", "Stable", lambda s: s.get("phase") == "Stable", timeout=60)[
        "stableRevision"
    ]
    apply(cluster, gpu_model("back", namespace, gpu_node, "0.02", rollout))
    promoted = wait_status(
        cluster, namespace, "back", "B promoted and A scaled down",
        lambda s: s.get("stableRevision") not in (None, a) and s.get("phase") == "Stable"
        and all(r["replicas"] == 0 for r in s["revisions"] if r["name"] == a),
        timeout=90,
    )  # fmt: skip
    b = promoted["stableRevision"]
    wait_serving(data_plane, host, f"back-{b}")
    gpu_node.set_gpus(2)  # another job took the spare GPU: B's two replicas hold all that is left

    load = SteadyLoad(data_plane, host)
    try:
        # Back to A (the rollout's steps are not part of a revision: A keeps its name); 50% waits for a person.
        revert = {**rollout, "steps": [{"weight": 50, "approval": True}, {"weight": 100}]}
        apply(cluster, gpu_model("back", namespace, gpu_node, "0.01", revert))
        pending = wait_status(
            cluster, namespace, "back", "A pending for lack of a GPU",
            lambda s: s.get("canaryRevision") == a and condition(s, "CapacityAvailable").get("status") == "False",
            timeout=60,
        )  # fmt: skip
        assert pending["weights"] == {"stable": 100, "canary": 0, "fallback": 0}
        assert GPU in condition(pending, "CapacityAvailable")["message"]
        assert route_weights(cluster, namespace, "back") == {f"back-{b}": 100}
        gpu_node.set_gpus(3)
        moved = wait_status(
            cluster, namespace, "back", "A at 50%", lambda s: s.get("weights", {}).get("canary") == 50, timeout=60
        )
        ready_a = next(r for r in moved["revisions"] if r["name"] == a)["readyReplicas"]
        assert ready_a >= 1, moved["revisions"]
        wait_until(lambda: load.served_by(f"back-{a}") > 0, 30, "A to serve its share")
    finally:
        statuses = load.stop()
    assert set(statuses) == {200}, statuses  # no request reached a revision with no ready pod
    wait_status(
        cluster, namespace, "back", "every pod scheduled",
        lambda s: condition(s, "CapacityAvailable").get("status") == "True", timeout=20,
    )  # fmt: skip
