"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler, kwok.

The API server runs with TLS, RBAC, Pod Security admission and a metadata-level audit log. kwok
plays the kubelet for a few fake nodes, so Deployments become Available through the real
controller-manager and scheduler, and pods get addresses in 127.0.0.0/8. Everything runs in its
own process group and `stop()` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ballast.api.admission_policy import policy_manifests
from ballast.api.crd import crd_manifest
from ballast.api.resources import RESOURCES
from ballast.devstack import certs
from ballast.devstack.binaries import Binaries

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # Health probes would drown the log; everything else at Metadata (who, what, when, verdict).
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        {"level": "Metadata"},
    ],
}
# Stacks started side by side on one machine (BALLAST_STACK_SLOT=0..15, for example one per git worktree)
# take distinct loopback ranges: simulators bind to pod addresses and the supervisor to ClusterIPs.
SLOT = int(os.environ.get("BALLAST_STACK_SLOT", "0"))
if not 0 <= SLOT <= 15:
    raise ValueError(f"BALLAST_STACK_SLOT must be 0..15, not {SLOT}")


@dataclass(frozen=True)
class AddressRanges:
    """A stack's loopback ranges: pods (kwok's CIDR, its first address) and Service ClusterIPs (loopback too: the
    supervisor serves each ClusterIP as kube-proxy would, see dataplane.py)."""

    pods: str
    services: str

    @classmethod
    def for_slot(cls, slot: int = SLOT, stack: int = 0) -> AddressRanges:
        """Slot `slot`'s ranges; `stack` 1 is a second stack of the same slot (a test that needs a cluster of its
        own while the session's runs): pods 127.1-16 or 127.17-32, Services 127.96-111 or 127.112-127."""
        if stack not in (0, 1):
            raise ValueError(f"a slot has two stacks, 0 and 1, not {stack}")
        return cls(pods=f"127.{1 + 16 * stack + slot}.0.1/16", services=f"127.{96 + 16 * stack + slot}.0.0/16")

    @property
    def api_service_ip(self) -> str:
        """The first ClusterIP: the `kubernetes` Service, which the API server's certificate names."""
        return self.services.replace("0/16", "1")


POD_CIDR = AddressRanges.for_slot().pods
ADMIN_USER = "ballast-admin"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"


class ClusterError(RuntimeError):
    """The control plane did not come up; the message names the component and its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `check` until it holds; raise naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: int) -> bool:
    """Send `sig` to the process group of `pid`; False when the group is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_process_groups(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM every group at once, then SIGKILL what is left after `timeout` (the stack is disposable)."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_signal_group(pid, 0) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


@dataclass
class Cluster:
    """One local control plane. Use as a context manager, or start() and stop()."""

    binaries: Binaries
    workdir: Path
    nodes: int = 3
    processes: list[Process] = field(default_factory=list)
    api_port: int = 0
    ranges: AddressRanges = field(default_factory=AddressRanges.for_slot)
    # Ballast's CRDs and admission policies, as `kubectl apply` would install them; False leaves them to the chart.
    with_ballast: bool = True

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    # -------------------------------------------------------------------------------- lifecycle

    def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        try:
            self._start(progress)
        except BaseException:
            self.stop()
            raise

    def _start(self, progress: Callable[[str], None]) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        progress("creating certificates")
        ca = certs.make_ca(pki, "ca")
        serving = certs.issue(
            pki, ca, "apiserver", common_name="kube-apiserver", server=True,
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1", self.ranges.api_service_ip),
        )  # fmt: skip
        service_account_key = certs.make_service_account_key(pki)
        identities = {
            "admin": (ADMIN_USER, "system:masters"),
            "controller-manager": ("system:kube-controller-manager", None),
            "scheduler": ("system:kube-scheduler", None),
            "kwok": ("kwok-controller", "system:masters"),
        }
        clients = {
            name: certs.issue(pki, ca, f"client-{name}", common_name=user, organization=group)
            for name, (user, group) in identities.items()
        }

        progress("starting etcd")
        etcd_client, etcd_peer = free_port(), free_port()
        self.spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                # A disposable store: durability buys nothing here and fsync dominates on slow disks.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        progress("starting kube-apiserver")
        self.api_port = free_port()
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={service_account_key}",
                f"--service-account-signing-key-file={service_account_key}",
                f"--service-cluster-ip-range={self.ranges.services}",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--allow-privileged=false",
                "--profiling=false",
            ],
        )
        for name, pair in clients.items():
            self._write_kubeconfig(self.workdir / f"{name}.kubeconfig", ca.cert, pair)
        wait_until(self._api_ready, 90, "kube-apiserver /readyz")

        progress("starting kube-controller-manager, kube-scheduler and kwok")
        self.spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                # EndpointSlices cannot hold loopback pod addresses; the supervisor serves Services instead.
                "--controllers=*,-endpointslice-controller,-endpoints-controller,-endpointslice-mirroring-controller",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={service_account_key}",
                f"--root-ca-file={ca.cert}",
                f"--cluster-signing-cert-file={ca.cert}",
                f"--cluster-signing-key-file={ca.key}",
            ],
        )
        self.spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(yaml.safe_dump_all([_not_ready_until_served(p) for p in self.binaries.kwok_stages]))
        self.spawn(
            "kwok",
            [
                str(self.binaries.kwok),
                f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
                f"--config={stages}",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                f"--cidr={self.ranges.pods}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        self._create_nodes()

        progress("installing the Gateway API CRDs" + (" and Ballast's" if self.with_ballast else ""))
        self.kubectl("apply", "--server-side", *(f"--filename={p}" for p in self.binaries.gateway_api_crds))
        if self.with_ballast:
            self.apply(crd_manifest(r) for r in RESOURCES)
        # Polled: `kubectl wait` fails at once on a CRD whose status has no conditions yet (a loaded machine).
        wait_until(self._crds_established, 60, "every CRD to be Established")
        if self.with_ballast:
            # No escalation through Ballast, trusted approvals: admission judges who asks.
            self.apply(policy_manifests())
        wait_until(self._nodes_ready, 60, f"{self.nodes} kwok nodes to be Ready")
        wait_until(lambda: self._exists("serviceaccount", "default", "default"), 60, "the default ServiceAccount")
        progress(f"control plane ready at {self.server}")

    def stop(self) -> None:
        stop_process_groups([p.popen.pid for p in self.processes])
        for process in self.processes:
            process.popen.wait()
        self.processes.clear()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------- helpers

    def spawn(self, name: str, args: list[str]) -> Process:
        log = self.workdir / "logs" / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise ClusterError(
                    f"{process.name} exited ({process.popen.returncode}); {process.log}:\n{process.tail()}"
                )

    def _write_kubeconfig(self, path: Path, ca: Path, client: certs.KeyPair) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ballast-dev", "cluster": {"server": self.server, "certificate-authority": str(ca)}}],
            "users": [
                {"name": "user", "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}
            ],
            "contexts": [{"name": "ballast-dev", "context": {"cluster": "ballast-dev", "user": "user"}}],
            "current-context": "ballast-dev",
        }
        path.write_text(yaml.safe_dump(config))

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (admin identity unless `kubeconfig` says otherwise)."""
        command = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, manifests: Iterator[dict[str, object]] | Sequence[dict[str, object]]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(list(manifests)))

    def _api_ready(self) -> bool:
        self.check_alive()
        if not self.kubeconfig.exists():
            return False
        result = self.kubectl("get", "--raw=/readyz", check=False)
        return result.returncode == 0 and result.stdout.strip() == "ok"

    def _exists(self, kind: str, name: str, namespace: str) -> bool:
        self.check_alive()
        return self.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0

    def _create_nodes(self) -> None:
        self.apply(fake_node(f"kwok-node-{index}") for index in range(self.nodes))

    def add_node(
        self,
        name: str,
        *,
        extra_capacity: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> None:
        """Another kwok node, for example one that offers `nvidia.com/gpu`; Ready once kwok has taken it."""
        self.apply([fake_node(name, extra_capacity=extra_capacity, labels=labels, taints=taints)])
        wait_until(lambda: self._node_ready(name), 60, f"kwok node {name} to be Ready")

    def _node_ready(self, name: str) -> bool:
        result = self.kubectl("get", "node", name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _crds_established(self) -> bool:
        result = self.kubectl("get", "crd", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        return all(
            any(c["type"] == "Established" and c["status"] == "True" for c in (crd.get("status") or {}).get(
                "conditions") or [])
            for crd in json.loads(result.stdout)["items"]
        )  # fmt: skip

    def _nodes_ready(self) -> bool:
        self.check_alive()
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        nodes = json.loads(result.stdout)["items"]
        ready = [
            n
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        ]
        return len(ready) >= self.nodes


def fake_node(
    name: str,
    *,
    extra_capacity: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A Node kwok plays: 32 CPUs, 256Gi, 110 pods, and any extended resources (`nvidia.com/gpu`) asked for."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", **(extra_capacity or {})}
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }
    if taints:
        node["spec"] = {"taints": taints}
    return node


# kwok's pod-ready stage makes a pod Ready the moment it runs. A kubelet's readiness probe waits for
# the server to answer, and so does Ballast before it sends a canary traffic: the pod starts NotReady
# and the supervisor, playing the kubelet, marks it Ready once its simulator accepts connections.
_NOT_READY = (
    ('  status: "True"\n  type: Ready\n', '  status: "False"\n  type: Ready\n'),
    ('  status: "True"\n  type: ContainersReady\n', '  status: "False"\n  type: ContainersReady\n'),
    (
        "  name: {{ .name | Quote }}\n  ready: true\n  restartCount: 0\n  state:\n    running:",
        "  name: {{ .name | Quote }}\n  ready: false\n  restartCount: 0\n  state:\n    running:",
    ),
)


def _not_ready_until_served(path: Path) -> dict[str, Any]:
    stage: dict[str, Any] = yaml.safe_load(path.read_text())
    if stage["metadata"]["name"] != "pod-ready":
        return stage
    template: str = stage["spec"]["next"]["statusTemplate"]
    for before, after in _NOT_READY:
        if template.count(before) < 1:
            raise ClusterError(f"kwok's pod-ready stage ({path}) changed shape: cannot find {before!r}")
        template = template.replace(before, after, 1)
    stage["spec"]["next"]["statusTemplate"] = template
    return stage
