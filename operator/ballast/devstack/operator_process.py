"""The operator as a separate process (`ballast run`) under its own RBAC identity: tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ballast.devstack.cluster import Cluster, free_port, stop_process_groups, wait_until

if TYPE_CHECKING:
    from ballast.devstack.dataplane import DataPlane

NAMESPACE, SERVICE_ACCOUNT = "ballast-system", "ballast"


def operator_kubeconfig(cluster: Cluster, rbac: Path) -> Path:
    """Apply the operator's RBAC and write a kubeconfig holding a TokenRequest token of its ServiceAccount."""
    cluster.kubectl("apply", "-f", str(rbac))
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=2h").stdout.strip()
    config = {**yaml.safe_load(cluster.kubeconfig.read_text()), "users": [{"name": "user", "user": {"token": token}}]}
    path = cluster.workdir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


class Operator:
    """`ballast run` as a separate process under the operator's own RBAC identity.

    `identity` is its name in the leader-election Lease, like a pod's name: a restart keeps it (and takes its
    own lease back at once); a second Operator with another identity is a standby replica.
    """

    def __init__(
        self,
        cluster: Cluster,
        kubeconfig: Path,
        prometheus_url: str,
        identity: str = "ballast-0",
        prometheus_timeout: str = "10s",
        webhook_allow_hosts: tuple[str, ...] = (),
    ) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.identity = identity
        self.prometheus_timeout = prometheus_timeout
        self.webhook_allow_hosts = webhook_allow_hosts
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0
        suffix = "" if identity == "ballast-0" else f"-{identity}"
        self.log = cluster.workdir / "logs" / f"operator{suffix}.log"

    def start(self) -> None:
        self.port = port = free_port()
        # A restart keeps its metrics port, as a pod keeps its: whatever scrapes it finds it again.
        self.metrics_port = self.metrics_port or free_port()
        environment = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_NAME": self.identity}
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
                    "--identity",
                    self.identity,
                    "--prometheus-timeout",
                    self.prometheus_timeout,
                    "--metrics-port",
                    str(self.metrics_port),
                    *(f"--webhook-allow-host={host}" for host in self.webhook_allow_hosts),
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

    def metrics(self) -> dict[str, float]:
        """The operator's own metrics now, by sample name with its labels (`name{label="value"}`)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = (sample for family in text_string_to_metric_families(text) for sample in family.samples)
        return {
            sample.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"
                           if sample.labels else ""): sample.value
            for sample in samples
        }  # fmt: skip

    def probes(self) -> dict[str, Any]:
        """What the liveness and readiness endpoint reports (kopf refreshes it at most every 10 s)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

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


@contextlib.contextmanager
def local_stack(rbac: Path, scrape_interval: str = "1s") -> Iterator[tuple[Cluster, DataPlane, Operator]]:
    """The whole local stack in a temporary folder, with the operator under its RBAC identity (benchmarks)."""
    from ballast.devstack.binaries import ensure_all
    from ballast.devstack.dataplane import DataPlane

    binaries = ensure_all(progress=lambda line: print(line, file=sys.stderr))
    # BALLAST_BENCH_DIR keeps the stack's folder (logs, audit log) for a look afterwards.
    kept = os.environ.get("BALLAST_BENCH_DIR")
    with contextlib.nullcontext(kept) if kept else tempfile.TemporaryDirectory(prefix="ballast-bench-") as folder:
        cluster = Cluster(binaries, Path(folder))
        try:
            cluster.start()
            plane = DataPlane(cluster, scrape_interval=scrape_interval)
            plane.start()
            operator = Operator(cluster, operator_kubeconfig(cluster, rbac), plane.prometheus_url)
            operator.start()
            try:
                yield cluster, plane, operator
            finally:
                operator.stop()
        finally:
            cluster.stop()
