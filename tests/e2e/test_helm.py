"""The chart as a user installs it, with the real `helm`, on a cluster of its own with nothing of Ballast on it.

The chart's Deployment creates the operator's pods; the supervisor runs each as `ballast run` with the
pod's arguments and env, a token of the chart's ServiceAccount bound to the pod, and its probes
(tests/e2e/helm.py, ballast/devstack/supervisor.py). So what runs here is what the chart deploys:
admitted under Pod Security `restricted`, holding exactly the chart's RBAC, electing a leader.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ballast.devstack.binaries import Binaries
from ballast.devstack.cluster import SLOT, AddressRanges, Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import Background
from ballast.shell.leader import LeaseTimings
from tests.e2e.helm import CHART, Helm
from tests.e2e.helpers import route_weights, send, status, wait_status
from tests.examples import EXAMPLES

RELEASE, NAMESPACE = "ballast", "ballast-system"
EXAMPLE = EXAMPLES / "modeldeployment-simulated.yaml"  # the README's example for a cluster of one's own
MODELS, MODEL, HOST = "assistants", "simulated", "simulated.example.com"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
# A replica stopped by the rolling update releases the Lease; a standby takes it at its next check.
HANDOVER = LeaseTimings().retry_period
# What the switch itself takes once a replica leads (a take-over reconciles everything), on two busy cores.
ONE_RECONCILE = 3.0
PROBE_REFRESH = 12.0  # kopf refreshes probe results at most every 10 s


@dataclass
class Stack:
    cluster: Cluster
    plane: DataPlane
    helm: Helm


@pytest.fixture(scope="module")
def stack(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second control plane and data plane (this slot's second address ranges) without Ballast's CRDs."""
    cluster = Cluster(
        binaries, tmp_path_factory.mktemp("helm-cluster"), ranges=AddressRanges.for_slot(SLOT, 1), with_ballast=False
    )
    cluster.start()
    try:
        plane = DataPlane(cluster)
        plane.start()
        yield Stack(cluster, plane, Helm(binaries, tmp_path_factory.mktemp("helm-home"), cluster.kubeconfig))
    finally:
        cluster.stop()


def get(cluster: Cluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods = get(cluster, "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def holder(cluster: Cluster) -> str:
    found = cluster.kubectl("get", "lease", "ballast-operator", "-n", NAMESPACE, "-o", "json", check=False)
    return str(json.loads(found.stdout)["spec"].get("holderIdentity", "")) if found.returncode == 0 else ""


def role(pod: dict[str, Any]) -> str:
    """What the pod's own health endpoint (kopf's, on the pod's address) reports."""
    url = f"http://{pod['status']['podIP']}:8080/healthz"
    with urllib.request.urlopen(url, timeout=2) as answer:
        report: dict[str, str] = json.loads(answer.read())["leadership"]
    return report["role"]


def older_chart(folder: Path) -> Path:
    """The chart as an earlier version: its ModelDeployment CRD lacks the `Killed` column (the upgrade adds it)."""
    copy = folder / "ballast-0.0.9"
    shutil.copytree(CHART, copy)
    (copy / "Chart.yaml").write_text((copy / "Chart.yaml").read_text().replace("version: 0.1.0", "version: 0.0.9"))
    crd = copy / "templates" / "crds" / "ballast.dev_modeldeployments.yaml"
    column = "    - name: Killed\n      type: boolean\n      jsonPath: .status.killSwitch.engaged\n"
    column += "      description: Whether the kill switch is engaged.\n"
    assert column in crd.read_text()
    crd.write_text(crd.read_text().replace(column, ""))
    return copy


def columns(cluster: Cluster) -> list[str]:
    crd = get(cluster, "crd", "modeldeployments.ballast.dev")
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


def restricted_namespace(cluster: Cluster, name: str) -> None:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}])


def pod_identities(cluster: Cluster, since: int) -> set[str]:
    """Pods whose bound tokens the operator's ServiceAccount wrote with (the audit log names each token's pod)."""
    with cluster.audit_log.open("rb") as log:
        log.seek(since)
        entries = [json.loads(line) for line in log.read().splitlines()]
    return {
        e["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name", ["(no pod)"])[0]
        for e in entries
        if e["user"]["username"] == OPERATOR_USER and e["verb"] in {"update", "patch", "create"}
    }


def test_helm_install_upgrade_and_uninstall_keep_model_deployments_and_their_traffic(
    stack: Stack, tmp_path: Path
) -> None:
    cluster, plane, helm = stack.cluster, stack.plane, stack.helm
    audit_start = cluster.audit_log.stat().st_size
    restricted_namespace(cluster, NAMESPACE)
    restricted_namespace(cluster, MODELS)

    # Install an earlier chart version into a namespace that enforces Pod Security `restricted`.
    started = time.monotonic()
    installed = helm.run("install", RELEASE, str(older_chart(tmp_path)), f"--namespace={NAMESPACE}", "--wait",
                         "--timeout=3m", f"--set=operator.prometheusUrl={plane.prometheus_url}")  # fmt: skip
    assert f"kubectl -n {NAMESPACE} get lease ballast-operator" in installed.stdout  # the chart's NOTES
    pods = operator_pods(cluster)
    print(f"helm install --wait: {len(pods)} operator pods Ready {time.monotonic() - started:.1f}s after the command")
    assert len(pods) == 2
    assert all(ready(p) for p in pods)
    assert "Killed" not in columns(cluster)
    names = {p["metadata"]["name"] for p in pods}
    wait_until(lambda: holder(cluster).rsplit("-", 1)[0] in names, 30, "one of the chart's pods to lead")
    leader = holder(cluster).rsplit("-", 1)[0]
    roles = {p["metadata"]["name"]: p for p in pods}
    wait_until(lambda: {n: role(p) for n, p in roles.items()} == {n: "leader" if n == leader else "standby"
               for n in names}, PROBE_REFRESH, "one leader and one standby on the pods' health endpoints")  # fmt: skip

    # The example for clusters of one's own, reconciled end to end by the chart's operator on real traffic.
    cluster.kubectl("apply", "-f", str(EXAMPLE))
    stable = wait_status(cluster, MODELS, MODEL, "Stable", lambda s: s.get("phase") == "Stable", 90)
    revision = stable["stableRevision"]
    served = f"{MODEL}-{revision}-"
    wait_until(lambda: send(plane, HOST, 20).share(served) == 1.0, 30, "users served by the model")
    deployments = {d["metadata"]["name"]: d["metadata"]["uid"] for d in get(cluster, "deploy", "-n", MODELS)["items"]}
    # The operator wrote as the chart's ServiceAccount, with tokens bound to its pods (the audit log names them).
    assert leader in pod_identities(cluster, audit_start)
    assert pod_identities(cluster, audit_start) <= names

    # Upgrade to this chart with a changed value, under steady load; a KillSwitch is created mid-upgrade.
    load = Background(f"{plane.gateway_url}/v1/chat/completions", rate=40, host=HOST, max_seconds=240)
    upgrade = helm.start("upgrade", RELEASE, str(CHART), f"--namespace={NAMESPACE}", "--reuse-values", "--wait",
                         "--timeout=3m", "--set=operator.logJson=false")  # fmt: skip
    try:
        # The hardest moment: the leading replica is being stopped, and nobody may lead yet.
        wait_until(lambda: leader not in {p["metadata"]["name"] for p in operator_pods(cluster)}, 120,
                   "the rolling update to stop the leading replica", interval=0.05)  # fmt: skip
        switch = {"apiVersion": "ballast.dev/v1alpha1", "kind": "KillSwitch",
                  "metadata": {"name": "during-upgrade", "namespace": MODELS},
                  "spec": {"modelDeployments": [MODEL], "reason": "switched while helm upgrades"}}  # fmt: skip
        switched_at = time.monotonic()
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(switch))
        bound = HANDOVER + ONE_RECONCILE
        wait_until(lambda: route_weights(cluster, MODELS, MODEL) == {f"{MODEL}-reject": 100}, 30, "the switch")
        took = time.monotonic() - switched_at
        _, errors = upgrade.communicate(timeout=240)
        assert upgrade.returncode == 0, errors
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
        load.stop()
    print(f"KillSwitch created as helm upgrade stopped the leader: route at the fallback {took:.2f}s later "
          f"(bound {bound:.0f}s)")  # fmt: skip
    assert took <= bound
    new_pods = operator_pods(cluster)
    assert len(new_pods) == 2
    assert not names & {p["metadata"]["name"] for p in new_pods}, "every replica was replaced"
    assert all("--log-json" not in p["spec"]["containers"][0]["args"] for p in new_pods)
    assert "Killed" in columns(cluster), "the upgrade updated the CRD"
    wait_until(lambda: holder(cluster).rsplit("-", 1)[0] in {p["metadata"]["name"] for p in new_pods}, 30,
               "a new replica to lead")  # fmt: skip
    report = load.report
    print(f"load through the upgrade: {report.summary()}")
    assert report.transport_errors == 0
    assert set(report.by_status) <= {200, 503}
    assert all(b.startswith((f"{MODEL}-reject-", served)) for b in report.by_backend)

    # The switch released: users are back on the same revision, whose workloads the upgrade never touched.
    cluster.kubectl("delete", "killswitch", "during-upgrade", "-n", MODELS)
    wait_until(lambda: send(plane, HOST, 20).share(served) == 1.0, 30, "users back on the model")
    assert status(cluster, MODELS, MODEL)["stableRevision"] == revision
    current = {d["metadata"]["name"]: d["metadata"]["uid"] for d in get(cluster, "deploy", "-n", MODELS)["items"]}
    assert current[f"{MODEL}-{revision}"] == deployments[f"{MODEL}-{revision}"]

    # Uninstall: the operator goes; the CRDs, the ModelDeployment and what serves it stay.
    uninstalled = helm.run("uninstall", RELEASE, f"--namespace={NAMESPACE}", "--wait")
    assert "These resources were kept due to the resource policy" in uninstalled.stdout
    assert cluster.kubectl("get", "deploy", RELEASE, "-n", NAMESPACE, check=False).returncode != 0
    for crd in ("modeldeployments.ballast.dev", "killswitches.ballast.dev", "clusterkillswitches.ballast.dev"):
        assert cluster.kubectl("get", "crd", crd, check=False).returncode == 0, crd
    assert status(cluster, MODELS, MODEL)["stableRevision"] == revision
    assert send(plane, HOST, 20).share(served) == 1.0
