"""The in-cluster configuration path against the real API server: a rotated service-account token is picked up."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.operator_process import NAMESPACE, SERVICE_ACCOUNT
from ballast.kube.client import KubeApi
from ballast.kube.resources import MODEL_DEPLOYMENTS


def bound_token(cluster: Cluster, secret: str) -> str:
    """A TokenRequest token of the operator's ServiceAccount, valid only while `secret` exists (as a projected
    token is valid only while its pod exists)."""
    cluster.kubectl("create", "secret", "generic", secret, "-n", NAMESPACE)
    return cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=10m",
        "--bound-object-kind=Secret", f"--bound-object-name={secret}",
    ).stdout.strip()  # fmt: skip


def refused(cluster: Cluster, token: str) -> bool:
    ca = ssl.create_default_context(cafile=str(cluster.workdir / "pki" / "ca.crt"))
    answer = httpx.get(f"{cluster.server}/version", headers={"Authorization": f"Bearer {token}"}, verify=ca)
    return answer.status_code == 401


def test_a_rotated_service_account_token_is_picked_up_in_cluster(
    cluster: Cluster, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    token_file, ca_file = tmp_path / "token", cluster.workdir / "pki" / "ca.crt"
    first = bound_token(cluster, "ballast-token-first")
    token_file.write_text(first)
    server = urlsplit(cluster.server)
    environ = {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port)}

    async def scenario() -> None:
        api = KubeApi.in_cluster(token_file=str(token_file), ca_file=str(ca_file), environ=environ)
        try:
            assert await api.get(MODEL_DEPLOYMENTS, NAMESPACE, "absent") is None
            # The kubelet writes a new token; the old one stops working (its pod, here its Secret, is gone).
            token_file.write_text(bound_token(cluster, "ballast-token-second"))
            cluster.kubectl("delete", "secret", "ballast-token-first", "-n", NAMESPACE)
            await asyncio.to_thread(wait_until, lambda: refused(cluster, first), 30, "the first token to be refused")
            assert await api.get(MODEL_DEPLOYMENTS, NAMESPACE, "absent") is None
        finally:
            await api.close()
            cluster.kubectl("delete", "secret", "ballast-token-second", "-n", NAMESPACE, check=False)

    asyncio.run(scenario())
