"""One real control plane per test session, a namespace per test, and the operator's identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ballast.devstack.binaries import BuildError, ensure_all
from ballast.devstack.cluster import Cluster, free_port, stop_process_groups, wait_until
from ballast.devstack.dataplane import DataPlane
from tests.e2e.switch import Switch

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "charts" / "ballast" / "files" / "rbac.yaml"
OPERATOR_USER = "system:serviceaccount:ballast-system:ballast"
SKIP_VARIABLE = "BALLAST_SKIP_E2E"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the e2e tests were opted out")
    try:
        binaries = ensure_all(progress=lambda line: print(line, file=sys.stderr))
    except BuildError as error:
        pytest.fail(f"cannot obtain the control plane binaries (set {SKIP_VARIABLE}=1 to opt out): {error}")
    control_plane = Cluster(binaries, tmp_path_factory.mktemp("control-plane"))
    control_plane.start()
    yield control_plane
    control_plane.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace where the API server enforces Pod Security `restricted`."""
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


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """A kubeconfig holding a TokenRequest token of the operator's ServiceAccount, bound by the chart's RBAC."""
    cluster.kubectl("apply", "-f", str(RBAC))
    token = cluster.kubectl("create", "token", "ballast", "-n", "ballast-system", "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        **admin,
        "users": [{"name": "user", "user": {"token": token}}],
    }
    path = cluster.workdir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def data_plane(cluster: Cluster) -> DataPlane:
    """Traefik, the simulator supervisor and Prometheus on the session's control plane."""
    plane = DataPlane(cluster)
    plane.start()
    return plane


class Operator:
    """`ballast run` as a separate process under the operator's own RBAC identity."""

    def __init__(self, cluster: Cluster, kubeconfig: Path, prometheus_url: str) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = cluster.workdir / "logs" / "operator.log"

    def start(self) -> None:
        port = free_port()
        environment = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ballast",
                    "run",
                    "--liveness",
                    f"http://127.0.0.1:{port}/healthz",
                    "--prometheus-url",
                    self.prometheus_url,
                ],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: self._live(port), 30, "the operator's liveness endpoint")

    def _live(self, port: int) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited; see {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crashed or evicted operator."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process_groups([self.process.pid])
            self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def prometheus_switch(data_plane: DataPlane) -> Iterator[Switch]:
    """The operator reaches Prometheus through this switch, so a test can cut it off."""
    switch = Switch(("127.0.0.1", data_plane.prometheus_port))
    yield switch
    switch.close()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, data_plane: DataPlane, operator_kubeconfig: Path, prometheus_switch: Switch
) -> Iterator[Operator]:
    running = Operator(cluster, operator_kubeconfig, prometheus_switch.url)
    running.start()
    yield running
    running.stop()
