"""The harness is a real Kubernetes: schemas, CEL, Pod Security, RBAC, kwok pods, audit log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api.validation import validate_manifest
from ballast.devstack import cli as dev_cli
from ballast.devstack.cluster import POD_CIDR, SLOT, AddressRanges, Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import HTTP_ROUTES
from ballast.traffic.gateway_api import owned_rule_patch
from tests import claims
from tests.e2e.conftest import OPERATOR_USER, ROOT
from tests.e2e.helpers import create_raw
from tests.e2e.manifests import deployment
from tests.examples import InvalidExample, invalid_examples, unusual_examples, valid_examples


def _apply(cluster: Cluster, manifest: dict[str, Any], namespace: str, **kwargs: Any) -> Any:
    manifest = {**manifest, "metadata": {**manifest["metadata"]}}
    if manifest["kind"] != "ClusterKillSwitch":
        manifest["metadata"]["namespace"] = namespace
    return cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=False, **kwargs)


def test_crds_from_the_repository_apply(cluster: Cluster) -> None:
    result = cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    assert result.stdout.count("customresourcedefinition.apiextensions.k8s.io/") == 3


def test_every_valid_example_is_accepted(cluster: Cluster, namespace: str) -> None:
    examples = valid_examples()
    for path, manifest in examples:
        result = _apply(cluster, manifest, namespace)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
    listed = cluster.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.split()
    assert len(listed) == sum(m["kind"] == "ModelDeployment" for _, m in examples)


def test_every_unusual_but_valid_example_is_accepted(cluster: Cluster, namespace: str) -> None:
    unusual = unusual_examples()
    for path, manifest in unusual:
        assert validate_manifest(manifest) == [], path.name
        result = _apply(cluster, manifest, namespace)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
    created = [m for _, m in unusual if m["kind"] == "ClusterKillSwitch"]
    cluster.kubectl("delete", "cks", *(m["metadata"]["name"] for m in created))


@pytest.mark.parametrize("example", invalid_examples(), ids=lambda e: e.path.stem)
def test_invalid_example_is_refused_by_the_api_server_with_the_validate_message(
    cluster: Cluster, namespace: str, example: InvalidExample
) -> None:
    status, message = create_raw(cluster, example.text, namespace)
    assert status >= 400, f"the API server accepted {example.path.name}"
    assert example.expected in message
    offline = example.offline_errors()
    assert any(example.expected in line and line in message for line in offline), (offline, message)


def test_a_deployment_becomes_available_on_kwok_nodes(cluster: Cluster, data_plane: DataPlane, namespace: str) -> None:
    """Scheduled by the real scheduler onto kwok nodes; Ready once the supervisor (the kubelet here) serves it."""
    cluster.apply([deployment("server", namespace, replicas=2)])
    cluster.kubectl("wait", "deployment/server", "-n", namespace, "--for=condition=Available", "--timeout=60s")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["status"]["podIP"].startswith(POD_CIDR.rsplit(".", 2)[0] + ".")


def test_pod_security_admission_refuses_a_privileged_pod(cluster: Cluster, namespace: str) -> None:
    # Root, privilege escalation allowed, capabilities kept: everything `restricted` forbids.
    cluster.apply([deployment("unsafe", namespace, security_context={})])
    deadline_events: list[str] = []

    def refused() -> bool:
        result = cluster.kubectl("get", "events", "-n", namespace, "-o", "json")
        deadline_events[:] = [e["message"] for e in json.loads(result.stdout)["items"]]
        return any('violates PodSecurity "restricted:latest"' in m for m in deadline_events)

    wait_until(refused, 30, "the ReplicaSet to report the Pod Security refusal")
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()
    assert pods == []


def _route(namespace: str, weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"route-{weight}".replace("-", "m", 1) if weight < 0 else "route", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "stable", "port": 8000, "weight": weight}]}],
        },
    }


def test_the_gateway_api_schema_refuses_bad_weights(cluster: Cluster, namespace: str) -> None:
    good = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_route(namespace, 90)), check=False)
    assert good.returncode == 0, good.stderr
    for weight in (-1, 1000001):
        bad = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_route(namespace, weight)), check=False)
        assert bad.returncode != 0
        assert "spec.rules[0].backendRefs[0].weight" in bad.stderr


async def test_a_route_patch_whose_test_no_longer_holds_is_told_apart_as_a_lost_race(
    cluster: Cluster, namespace: str
) -> None:
    """The API server answers a failed JSON-patch `test` with a bare 422; the operator retries it at once."""
    route = _route(namespace, 90)
    route["spec"]["rules"][0]["name"] = "split"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(route))
    api = KubeApi.from_environment(str(cluster.kubeconfig))
    try:
        current = await api.get(HTTP_ROUTES, namespace, "route")
        assert current is not None
        fresh = owned_rule_patch(current, "split", [{"name": "stable", "port": 8000, "weight": 80}])
        current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) - 1)
        stale = owned_rule_patch(current, "split", [{"name": "stable", "port": 8000, "weight": 70}])
        with pytest.raises(ApiError) as refused:
            await api.json_patch(HTTP_ROUTES, namespace, "route", stale)
        assert refused.value.status == 422
        assert refused.value.lost_race
        await api.json_patch(HTTP_ROUTES, namespace, "route", fresh)  # the same patch, on fresh state, applies
        invalid = [{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": -1}]
        with pytest.raises(ApiError) as bad:
            await api.json_patch(HTTP_ROUTES, namespace, "route", invalid)
        assert bad.value.status == 422
        assert not bad.value.lost_race  # an invalid result is not a race: it is not retried at once
    finally:
        await api.close()


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "modeldeployments.ballast.dev", True),
        ("patch", "modeldeployments.ballast.dev/status", True),
        ("create", "deployments.apps", True),
        ("create", "httproutes.gateway.networking.k8s.io", True),
        ("create", "events", True),
        ("update", "modeldeployments.ballast.dev", False),
        ("patch", "modeldeployments.ballast.dev", False),  # never the spec: GitOps sees no drift
        ("create", "secrets", False),
        ("get", "secrets", False),
        ("delete", "namespaces", False),
        ("create", "referencegrants.gateway.networking.k8s.io", False),
        ("create", "pods", False),
        # Children not in memory yet are read once before they are created (never adopted); HPAs are watched.
        ("get", "deployments.apps", True),
        ("watch", "horizontalpodautoscalers.autoscaling", True),
        ("update", "services", False),
        # Kill switches: read switches, write their status; read grants, namespaces and Gateway classes.
        ("watch", "clusterkillswitches.ballast.dev", True),
        ("patch", "killswitches.ballast.dev/status", True),
        ("update", "killswitches.ballast.dev", False),
        # The KillSwitch a burn-rate breach engages; a person releases it by deleting it, never the operator.
        ("create", "killswitches.ballast.dev", True),
        ("delete", "killswitches.ballast.dev", False),
        ("watch", "referencegrants.gateway.networking.k8s.io", True),
        ("watch", "namespaces", True),
        ("get", "gatewayclasses.gateway.networking.k8s.io", True),
        ("patch", "gatewayclasses.gateway.networking.k8s.io", False),
        # The reject responder's disruption budget, and nothing else of the policy group.
        ("create", "poddisruptionbudgets.policy", True),
        ("get", "poddisruptionbudgets.policy", True),  # one of the responder's name not yet in memory
        ("watch", "poddisruptionbudgets.policy", True),
        ("update", "poddisruptionbudgets.policy", False),
        ("create", "pods/eviction", False),
    ],
)
def test_the_operator_identity_is_granted_and_denied_these_verbs(
    cluster: Cluster, operator_kubeconfig: Path, verb: str, resource: str, allowed: bool
) -> None:
    kind, _, subresource = resource.partition("/")  # `can-i` reads kind/name; a subresource is a flag
    scope = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl("auth", "can-i", verb, kind, *scope, "-A", kubeconfig=operator_kubeconfig, check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr


@pytest.mark.parametrize(
    ("verb", "lease", "namespace", "allowed"),
    [
        # Leader election: its one Lease in its own namespace, read, created and renewed (update); nothing else.
        ("get", "ballast-operator", "ballast-system", True),
        ("update", "ballast-operator", "ballast-system", True),
        ("create", "", "ballast-system", True),
        ("get", "another-lease", "ballast-system", False),
        ("update", "another-lease", "ballast-system", False),
        ("patch", "ballast-operator", "ballast-system", False),
        ("delete", "ballast-operator", "ballast-system", False),
        ("list", "", "ballast-system", False),
        ("watch", "", "ballast-system", False),
        ("get", "ballast-operator", "kube-system", False),
        ("create", "", "kube-system", False),
    ],
)
def test_the_operator_identity_holds_only_its_own_lease(
    cluster: Cluster, operator_kubeconfig: Path, verb: str, lease: str, namespace: str, allowed: bool
) -> None:
    target = f"leases.coordination.k8s.io/{lease}" if lease else "leases.coordination.k8s.io"
    result = cluster.kubectl("auth", "can-i", verb, target, "-n", namespace, kubeconfig=operator_kubeconfig,
                             check=False)  # fmt: skip
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr


def test_the_audit_log_records_the_operator_calls(cluster: Cluster, operator_kubeconfig: Path) -> None:
    marker = f"audit-probe-{time.monotonic_ns()}"
    cluster.kubectl("get", "modeldeployments", "-A", f"--selector=probe={marker}", kubeconfig=operator_kubeconfig)
    denied = cluster.kubectl("get", "secrets", "-A", kubeconfig=operator_kubeconfig, check=False)
    assert denied.returncode != 0

    def entries() -> list[dict[str, Any]]:
        lines = cluster.audit_log.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e.get("user", {}).get("username") == OPERATOR_USER]

    def recorded() -> bool:
        found = entries()
        listed = any(marker in e.get("requestURI", "") for e in found)
        refused = any(
            e.get("objectRef", {}).get("resource") == "secrets" and e.get("responseStatus", {}).get("code") == 403
            for e in found
        )
        return listed and refused

    wait_until(recorded, 10, "audit entries for the operator's identity")
    assert all(e["level"] == "Metadata" for e in entries())


def test_stopping_a_control_plane_leaves_no_process(cluster: Cluster, tmp_path: Path) -> None:
    second = Cluster(cluster.binaries, tmp_path / "second", nodes=1)
    second.start()
    tree = claims.process_tree(p.popen.pid for p in second.processes)
    assert len(tree) >= 5
    second.stop()
    assert claims.survivors(tree) == [], "processes survived stop()"


def _simulators(tree: claims.Snapshot) -> int:
    def command(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    return sum(b"ballast.devstack.simulator" in command(pid) for pid, _ in tree)


def test_ballast_dev_down_leaves_no_process_of_a_stack_with_its_data_plane_and_model_servers(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `ballast dev up` records, `ballast dev down` stops: the control plane, Traefik, Prometheus, the
    supervisor and the simulators it runs for pods (this slot's second address ranges)."""
    folder = tmp_path / "dev"
    second = Cluster(cluster.binaries, folder, nodes=1, ranges=AddressRanges.for_slot(SLOT, 1))
    try:
        second.start()
        plane = DataPlane(second)
        plane.start()
        second.apply([deployment("sim", "default", replicas=2)])
        roots = [p.popen.pid for p in second.processes]
        wait_until(lambda: _simulators(claims.process_tree(roots)) == 2, 60, "two simulators to run")
        monkeypatch.setenv("BALLAST_DEV_DIR", str(folder))
        dev_cli.record(second, plane, [])
        tree = claims.process_tree(roots)
        down = subprocess.run([sys.executable, "-m", "ballast", "dev", "down"], capture_output=True, text=True,
                              env={**os.environ, "BALLAST_DEV_DIR": str(folder)}, timeout=60, check=False)  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == f"stopped {len(roots)} processes"
        assert claims.survivors(tree) == [], "processes survived `ballast dev down`"
    finally:
        second.stop()


def test_the_survivor_check_finds_a_process_left_behind() -> None:
    """The broken variant: a stop that signals only the leader leaves its child, and the check above names it."""
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        wait_until(lambda: len(claims.process_tree([leader.pid])) == 2, 10, "the child to start")
        tree = claims.process_tree([leader.pid])
        leader.kill()
        leader.wait()
        left = claims.survivors(tree)
        assert len(left) == 1
        assert left[0] != leader.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
