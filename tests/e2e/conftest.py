"""One real control plane per test session, a namespace per test, and the operator's identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast.devstack.binaries import Binaries, BuildError, ensure_all
from ballast.devstack.cluster import Cluster
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import Operator
from ballast.devstack.operator_process import operator_kubeconfig as make_operator_kubeconfig
from tests.e2e.helpers import Plugin, plugin_command
from tests.e2e.stall import Stall
from tests.e2e.switch import Switch

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "charts" / "ballast" / "files" / "rbac.yaml"
OPERATOR_USER = "system:serviceaccount:ballast-system:ballast"
SKIP_VARIABLE = "BALLAST_SKIP_E2E"


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """The local stack's binaries (kube-apiserver, helm, ...), built once into the cache."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the e2e tests were opted out")
    try:
        return ensure_all(progress=lambda line: print(line, file=sys.stderr))
    except BuildError as error:
        pytest.fail(f"cannot obtain the control plane binaries (set {SKIP_VARIABLE}=1 to opt out): {error}")


@pytest.fixture(scope="session")
def cluster(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    control_plane = Cluster(binaries, tmp_path_factory.mktemp("control-plane"))
    control_plane.start()
    yield control_plane
    control_plane.stop()


def _fresh_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace where the API server enforces Pod Security `restricted`, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            }
        ]
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    yield from _fresh_namespace(cluster)


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    """A second fresh namespace, for a test about one deployment not touching another."""
    yield from _fresh_namespace(cluster)


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """A kubeconfig holding a TokenRequest token of the operator's ServiceAccount, bound by the chart's RBAC."""
    return make_operator_kubeconfig(cluster, RBAC)


@pytest.fixture(scope="session")
def data_plane(cluster: Cluster) -> DataPlane:
    """Traefik, the simulator supervisor and Prometheus on the session's control plane."""
    plane = DataPlane(cluster)
    plane.start()
    return plane


@pytest.fixture(scope="session")
def prometheus_stall(data_plane: DataPlane) -> Iterator[Stall]:
    """Between the switch and Prometheus: a test can make some queries go unanswered."""
    stall = Stall(("127.0.0.1", data_plane.prometheus_port))
    yield stall
    stall.close()


@pytest.fixture(scope="session")
def prometheus_switch(prometheus_stall: Stall) -> Iterator[Switch]:
    """The operator reaches Prometheus through this switch, so a test can cut it off."""
    switch = Switch(prometheus_stall.address)
    yield switch
    switch.close()


# Short, so that a test can outlast every executor worker times this without waiting minutes.
CHECK_TIMEOUT_SECONDS = 3


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, data_plane: DataPlane, operator_kubeconfig: Path, prometheus_switch: Switch
) -> Iterator[Operator]:
    timeout = f"{CHECK_TIMEOUT_SECONDS}s"
    # Webhook receivers of the tests listen on this host's loopback, under a name the operator allows.
    running = Operator(cluster, operator_kubeconfig, prometheus_switch.url, prometheus_timeout=timeout,
                       webhook_allow_hosts=("localhost",))  # fmt: skip
    running.start()
    yield running
    running.stop()


MIRROR_FEATURES = ["Gateway", "HTTPRoute", "HTTPRouteRequestMirror", "ReferenceGrant"]


@pytest.fixture(scope="session")
def mirroring_gateway(cluster: Cluster) -> dict[str, str]:
    """A Gateway whose class reports HTTPRouteRequestMirror, as Envoy Gateway or Istio do; nothing serves it.

    Traefik, the local Gateway, cannot mirror; routes attached here prove at the API level what Ballast
    writes for a Gateway that can (shadow phases, kill-switch traffic capture).
    """
    cluster.apply(
        [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": "mirroring"},
                "spec": {"controllerName": "example.com/mirroring-gateway"},
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "mirroring-gateway", "namespace": "default"},
                "spec": {"gatewayClassName": "mirroring", "listeners": [{"name": "http", "protocol": "HTTP",
                         "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}]},
            },
        ]
    )  # fmt: skip
    features = {"status": {"supportedFeatures": [{"name": f} for f in MIRROR_FEATURES]}}
    cluster.kubectl(
        "patch", "gatewayclass", "mirroring", "--subresource=status", "--type=merge", "-p", json.dumps(features)
    )
    return {"name": "mirroring-gateway", "namespace": "default"}


@pytest.fixture
def kubectl_ballast(cluster: Cluster, namespace: str) -> Plugin:
    """`kubectl ballast <args> -n <the test's namespace>` through the real kubectl."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command, env = plugin_command(cluster, *args, "-n", namespace)
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    return run
