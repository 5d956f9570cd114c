"""Helpers the e2e tests share: ModelDeployments, status polling, routes and real requests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from ballast.api.resources import BY_KIND
from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, ClusterError, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import LoadReport
from tests import claims

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


def wait_revisions_match_deployments(cluster: Cluster, namespace: str, name: str, timeout: float = 30) -> list[Any]:
    """Poll until status.revisions name their real Deployments with their ready replicas; then check once more, so
    a timeout fails with what differs. Returns the revisions."""

    def compare() -> list[Any]:
        revisions = status(cluster, namespace, name).get("revisions") or []
        listed = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
        claims.revisions_match_deployments(revisions, {d["metadata"]["name"]: d for d in listed})
        return list(revisions)

    def matches() -> bool:
        try:
            compare()
        except AssertionError:
            return False
        return True

    with contextlib.suppress(ClusterError):
        wait_until(matches, timeout, f"{namespace}/{name}: status.revisions to match the Deployments")
    return compare()


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


def audited_reads(
    cluster: Cluster, user: str, namespace: str, since: datetime, until: datetime, name: str | None = None
) -> int:
    """Reads (get, list) by `user` in a namespace received between two moments, from the API server's audit log;
    with `name`, only GETs of that ModelDeployment."""
    count = 0
    for line in cluster.audit_log.read_text().splitlines():
        entry = json.loads(line)
        target = entry.get("objectRef") or {}
        if (
            entry.get("stage") == "ResponseComplete"
            and entry.get("verb") in (("get",) if name else ("get", "list"))
            and entry.get("user", {}).get("username") == user
            and target.get("namespace") == namespace
            and (name is None or (target.get("resource"), target.get("name")) == ("modeldeployments", name))
            and since <= datetime.fromisoformat(entry["requestReceivedTimestamp"]) <= until
        ):
            count += 1
    return count


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


def send(data_plane: DataPlane, host: str, total: int = 200, headers: dict[str, str] | None = None) -> LoadReport:
    return loadgen.run(
        f"{data_plane.gateway_url}/v1/chat/completions",
        total=total,
        rate=400,
        concurrency=16,
        host=host,
        headers=headers,
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


def start_canary(
    cluster: Cluster, data_plane: DataPlane, namespace: str, name: str, manifest: dict[str, Any] | None = None
) -> tuple[str, str]:
    """Deploy, wait until served, change the template; return (stable, canary) once at the first step."""
    apply(cluster, manifest or model_deployment(name, namespace))
    first = wait_status(cluster, namespace, name, "Stable", lambda s: s.get("phase") == "Stable")
    stable = first["stableRevision"]
    wait_serving(data_plane, f"{name}.{namespace}.test", f"{name}-{stable}")
    change_template(cluster, namespace, name, "0.02")
    at_step = wait_status(cluster, namespace, name, "canary at 30%", lambda s: s.get("weights", {}).get("canary") == 30)
    return stable, at_step["canaryRevision"]


def create_raw(cluster: Cluster, text: str, namespace: str) -> tuple[int, str]:
    """POST a manifest's own YAML text to the API server (strict field validation), as a client that sends
    YAML does: (HTTP status, the Status message). kubectl is not in between, so what the API server itself
    refuses (a repeated key, NaN, an alias bomb) is seen; creating honours generateName."""
    kind = re.search(r"^kind: (\w+)$", text, re.MULTILINE)
    resource = BY_KIND[kind.group(1) if kind else ""]
    scope = "" if resource.scope == "Cluster" else f"/namespaces/{namespace}"
    pki = cluster.workdir / "pki"
    tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(str(pki / "client-admin.crt"), str(pki / "client-admin.key"))
    response = httpx.post(
        f"{cluster.server}/apis/{resource.api_version}{scope}/{resource.plural}?fieldValidation=Strict",
        content=re.sub(r"\bnamespace: assistants\b", f"namespace: {namespace}", text),
        headers={"Content-Type": "application/yaml", "Accept": "application/json"},
        verify=tls,
        timeout=30,
    )
    return response.status_code, str(response.json().get("message", ""))


Plugin = Callable[..., subprocess.CompletedProcess[str]]


def plugin_command(cluster: Cluster, *args: str) -> tuple[list[str], dict[str, str]]:
    """The real kubectl, finding `kubectl-ballast` on PATH; the cluster through $KUBECONFIG, as a person has it."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig)}
    return [str(cluster.binaries.kubectl), "ballast", *args], env
