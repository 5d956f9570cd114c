"""Plays the kubelet's and kube-proxy's parts for kwok pods: one process per pod, Services served.

For each running pod with an address and a container port, the first container runs as a process on
the pod's own address (kwok gives pods addresses in 127.0.0.0/8): Ballast itself for a `ballast`
command line (the operator the chart deploys, the reject responder), else a model-server simulator
configured from the container's env and args (`pod_runtime.py`). Every container gets the API server's
address in KUBERNETES_SERVICE_HOST/PORT, and a Ballast container that mounts the service-account
volume gets its files, with a token of the pod's ServiceAccount bound to the pod (`token_volume.py`).

Readiness follows the container's probes (startup, readiness, liveness; httpGet and tcpSocket) as a
kubelet runs them, from the moment the process first accepts a connection on its port; a container
without a readiness probe is Ready once its port accepts connections.
Deleting the pod stops its process (SIGTERM). A process that exits, or fails its liveness probe,
shows as a not-ready pod with a growing restart count, and is restarted with exponential backoff.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client, config, watch

from ballast.devstack.pod_runtime import (
    Probe,
    ProbeState,
    accepts,
    ballast_program,
    command_line,
    run_probes,
    runs_ballast,
)
from ballast.devstack.serviceproxy import Endpoint, ServicePort, ServiceProxy
from ballast.devstack.token_volume import TokenVolume, VolumeNotReady

log = logging.getLogger("ballast.supervisor")
BACKOFF_START, BACKOFF_CAP = 1.0, 10.0


@dataclass
class Workload:
    namespace: str
    name: str
    address: str
    port: int
    env: dict[str, str]
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    ready: bool | None = None
    log_path: str = ""
    listening: bool = False  # the simulator accepts connections: only then is it an endpoint
    labels: dict[str, str] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    container: str = "server"  # the first container's name, for its status
    image: str = ""
    probes: dict[str, Probe] = field(default_factory=dict)  # startup, readiness, liveness
    token: TokenVolume | None = None
    states: dict[str, ProbeState] = field(default_factory=dict)  # of the running process
    started_at: float = 0.0
    reached: bool = False  # the running process's port has accepted a connection


def _probes(container: Any, named_ports: dict[str, int]) -> dict[str, Probe]:
    found = {
        kind: Probe.of(getattr(container, f"{kind}_probe"), named_ports)
        for kind in ("startup", "readiness", "liveness")
    }
    return {kind: probe for kind, probe in found.items() if probe is not None}


def workload_of(pod: Any, volumes: Path | None = None) -> Workload | None:
    """What to run for a pod, or None when it is not (or no longer) a running pod with a port. Its
    service-account volume, if it mounts one, goes under `volumes`."""
    if pod.metadata.deletion_timestamp or not pod.status or not pod.status.pod_ip:
        return None
    if pod.status.phase != "Running" or not pod.spec.containers:
        return None
    container = pod.spec.containers[0]
    ports = [p.container_port for p in container.ports or []]
    if not ports:
        return None
    env = {e.name: e.value for e in container.env or [] if e.value is not None}
    env.update(_field_env(pod, container))
    named_ports = {p.name: p.container_port for p in container.ports if p.name}
    return Workload(
        pod.metadata.namespace,
        pod.metadata.name,
        pod.status.pod_ip,
        ports[0],
        env,
        list(container.args or []),
        labels=dict(pod.metadata.labels or {}),
        named_ports=named_ports,
        command=list(container.command or []),
        container=container.name,
        image=container.image or "",
        probes=_probes(container, named_ports),
        token=_token_volume(pod, container, env, volumes),
    )


def _token_volume(pod: Any, container: Any, env: dict[str, str], volumes: Path | None) -> TokenVolume | None:
    """The service-account volume of a container that runs Ballast (simulators talk to no API server: a token
    for every model pod would only add API calls to every pod start)."""
    if volumes is None or not runs_ballast(command_line(container.command or [], container.args or [],
                                                        container.image or "", env)):  # fmt: skip
        return None
    return TokenVolume.of(pod, container, volumes)


def _field_env(pod: Any, container: Any) -> dict[str, str]:
    """Env from the downward API (`valueFrom.fieldRef`), resolved as the kubelet would."""
    fields = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "status.podIP": pod.status.pod_ip,
    }
    found = {}
    for variable in container.env or []:
        reference = variable.value_from.field_ref if variable.value_from else None
        if reference is not None and reference.field_path in fields:
            found[variable.name] = fields[reference.field_path]
    return found


def program(workload: Workload) -> list[str]:
    """What the "container" runs: Ballast's own commands (the operator, the reject responder) for real, else the
    simulator."""
    line = command_line(workload.command, workload.args, workload.image, workload.env)
    ballast = ballast_program(line, workload.address)
    if ballast is not None:
        return ballast
    return [
        sys.executable, "-m", "ballast.devstack.simulator",
        "--host", workload.address, "--port", str(workload.port),
        "--name", workload.name, "--", *workload.args,
    ]  # fmt: skip


def pod_status(
    containers: list[str], ready: bool, restarts: int = 0, exit_code: int | None = None, image: str = "simulator"
) -> dict[str, Any]:
    """A pod status as a kubelet writes it: readiness conditions, and each container running or crash-looping."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state: dict[str, Any] = {"running": {"startedAt": now}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
    last: dict[str, Any] = (
        {"lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "finishedAt": now}}}
        if exit_code is not None
        else {}
    )
    return {
        "conditions": [
            {"type": kind, "status": str(ready), "lastTransitionTime": now} for kind in ("Ready", "ContainersReady")
        ],
        "containerStatuses": [
            {
                "name": name,
                "ready": ready,
                "restartCount": restarts,
                "image": image,
                "imageID": image,
                "state": state,
                **last,
            }
            for name in containers
        ],
    }


def _runs_without_ports(pod: Any) -> bool:
    """A running, not yet ready pod whose containers listen on nothing: no simulator, nothing to wait for."""
    status = pod.status
    if pod.metadata.deletion_timestamp or not status or status.phase != "Running" or not pod.spec.containers:
        return False
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    return not ready and not any(c.ports for c in pod.spec.containers)


def service_ports(service: Any) -> set[ServicePort]:
    """The ClusterIP ports of a Service that selects pods; empty for headless or selector-less ones."""
    spec = service.spec
    if not spec or not spec.selector or spec.cluster_ip in (None, "", "None") or service.metadata.deletion_timestamp:
        return set()
    return {
        ServicePort(
            service.metadata.namespace,
            service.metadata.name,
            spec.cluster_ip,
            port.port,
            port.target_port if port.target_port is not None else port.port,
            tuple(sorted(spec.selector.items())),
        )
        for port in spec.ports or []
        if (port.protocol or "TCP") == "TCP"
    }


class Supervisor:
    def __init__(self, core: Any, log_dir: str, volume_dir: str = "", api_server: str = "") -> None:
        # The kubernetes client's models are loosely typed; treat the API as dynamic.
        self.core = core
        self.log_dir = log_dir
        self.volume_dir = Path(volume_dir or os.path.join(log_dir, "volumes"))
        # What the kubelet injects into every container: where the API server is (host, port).
        self.api_environment = _service_host(api_server)
        self.workloads: dict[str, Workload] = {}
        self.services: dict[str, set[ServicePort]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.proxy = ServiceProxy(self.endpoints)

    # ------------------------------------------------------------------------------ processes

    def _start(self, uid: str, workload: Workload) -> None:
        workload.log_path = os.path.join(self.log_dir, f"{workload.namespace}_{workload.name}.log")
        if not self._mount(workload):
            workload.next_start = time.monotonic() + BACKOFF_START
            return
        # A pod sees its own env, never the supervisor's credentials.
        inherited = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        token = workload.token.environment() if workload.token else {}
        environment = {**inherited, **self.api_environment, **token, **workload.env}
        command = program(workload)
        with open(workload.log_path, "ab") as out:
            workload.process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
        workload.started_at = time.monotonic()
        workload.states = {kind: ProbeState(probe) for kind, probe in workload.probes.items()}
        log.info("started %s for %s/%s on %s:%s", " ".join(command[2:4]),
                 workload.namespace, workload.name, workload.address, workload.port)  # fmt: skip

    def _mount(self, workload: Workload) -> bool:
        """Write (or refresh) the pod's service-account volume; False while a source is missing."""
        if workload.token is None:
            return True
        try:
            workload.token.write(self.core)
        except (VolumeNotReady, client.ApiException) as error:
            log.info("volume of %s/%s not ready: %s", workload.namespace, workload.name, error)
            return False
        return True

    def _stop(self, workload: Workload) -> None:
        if workload.process and workload.process.poll() is None:
            workload.process.terminate()
            try:
                workload.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                workload.process.kill()
                workload.process.wait()

    def _set_ready(self, workload: Workload, ready: bool, exit_code: int | None = None) -> None:
        """Report readiness and restarts in the pod's status, as a kubelet does."""
        if workload.ready == ready and exit_code is None:
            return
        status = pod_status([workload.container], ready, workload.restarts, exit_code, workload.image or "simulator")
        if self._patch_status(workload.namespace, workload.name, status):
            workload.ready = ready

    def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        try:
            self.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        except client.ApiException as error:
            if error.status != 404:
                log.warning("cannot report status of %s/%s: %s", namespace, name, error.reason)
            return False
        return True

    # ---------------------------------------------------------------------------------- loops

    def on_pod(self, event_type: str, pod: Any) -> None:
        uid = pod.metadata.uid
        desired = None if event_type == "DELETED" else workload_of(pod, self.volume_dir)
        if event_type != "DELETED" and desired is None and _runs_without_ports(pod):
            self._mark_ready(pod)  # nothing to serve, nothing to probe: ready once running
        with self.lock:
            current = self.workloads.get(uid)
            if desired is None and current is not None:
                self._stop(current)
                del self.workloads[uid]
                log.info("stopped %s/%s", current.namespace, current.name)
            elif desired is not None and current is None:
                self.workloads[uid] = desired
                self._start(uid, desired)

    def _mark_ready(self, pod: Any) -> None:
        names = [c.name for c in pod.spec.containers]
        self._patch_status(pod.metadata.namespace, pod.metadata.name, pod_status(names, ready=True))

    def endpoints(self, namespace: str, selector: dict[str, str], target: int | str) -> list[Endpoint]:
        """Ready pods of `namespace` matching `selector`, at the Service's target port."""
        with self.lock:
            candidates = list(self.workloads.values())
        found = []
        for workload in candidates:
            if workload.namespace != namespace or workload.ready is False:
                continue
            if workload.process is None or workload.process.poll() is not None or not workload.listening:
                continue
            if any(workload.labels.get(k) != v for k, v in selector.items()):
                continue
            port = target if isinstance(target, int) else workload.named_ports.get(target)
            if port is not None:
                found.append(Endpoint(workload.address, port))
        return found

    def on_service(self, event_type: str, service: Any) -> None:
        uid = service.metadata.uid
        with self.lock:
            if event_type == "DELETED":
                self.services.pop(uid, None)
            else:
                self.services[uid] = service_ports(service)
            desired = set().union(*self.services.values()) if self.services else set()
        self.proxy.sync(desired)

    def check_processes(self) -> None:
        """Restart exited processes with backoff, refresh tokens, and probe for readiness."""
        with self.lock:
            items = list(self.workloads.items())
        for uid, workload in items:
            process = workload.process
            if process is not None and process.poll() is not None:
                workload.restarts += 1
                backoff = min(BACKOFF_START * 2 ** (workload.restarts - 1), BACKOFF_CAP)
                workload.next_start = time.monotonic() + backoff
                workload.process = None
                workload.listening = workload.reached = False
                log.info("%s/%s exited (%s); restart %d in %.0fs",
                         workload.namespace, workload.name, process.returncode, workload.restarts, backoff)  # fmt: skip
                self._set_ready(workload, False, exit_code=process.returncode)
            elif process is None and time.monotonic() >= workload.next_start:
                with self.lock:
                    if uid in self.workloads:
                        self._start(uid, workload)
            elif process is not None:
                if workload.token is not None and workload.token.due():
                    self._mount(workload)
                if workload.probes:
                    # Probes start once the process listens: a process starts here in about a second, and a
                    # first probe before that would hold a pod NotReady for a whole period (5 s, say).
                    workload.reached = workload.reached or accepts(workload.address, workload.port)
                    if workload.reached:
                        self._probe(workload)
                elif not workload.listening:
                    workload.listening = accepts(workload.address, workload.port)
                elif workload.ready is not True:
                    # Pods start NotReady (the local stack's kwok stage); Ready once the server answers, as a
                    # kubelet's readiness probe would have it.
                    self._set_ready(workload, True)

    def _probe(self, workload: Workload) -> None:
        verdict = run_probes(workload.states, workload.address, workload.started_at, time.monotonic())
        if verdict.restart and workload.process is not None:
            log.info("%s probe of %s/%s failed: restarting", verdict.restart, workload.namespace, workload.name)
            workload.process.terminate()
        elif verdict.ready is not None:
            workload.listening = verdict.ready
            self._set_ready(workload, verdict.ready)

    def watch(self, list_all: Callable[..., Any], on_event: Callable[[str, Any], None]) -> None:
        """List, then watch from that resourceVersion; list again when the window expires (410)."""
        resource_version = ""
        while not self.stopping.is_set():
            try:
                if not resource_version:
                    listed = list_all()
                    for item in listed.items:
                        on_event("ADDED", item)
                    resource_version = listed.metadata.resource_version
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    list_all, resource_version=resource_version, timeout_seconds=60
                )
                for event in stream:
                    resource_version = event["object"].metadata.resource_version
                    on_event(event["type"], event["object"])
            except client.ApiException as error:
                if error.status == 410:
                    resource_version = ""
                    continue
                log.warning("watch failed: %s", error.reason)
                self.stopping.wait(1)
            except Exception as error:  # the API server restarting must not kill the supervisor
                log.warning("watch failed: %s", error)
                self.stopping.wait(1)

    def run(self) -> None:
        threading.Thread(target=self.proxy.run_forever, daemon=True).start()
        threading.Thread(
            target=self.watch, args=(self.core.list_pod_for_all_namespaces, self.on_pod), daemon=True
        ).start()
        threading.Thread(
            target=self.watch, args=(self.core.list_service_for_all_namespaces, self.on_service), daemon=True
        ).start()
        while not self.stopping.wait(0.2):
            self.check_processes()

    def shutdown(self) -> None:
        self.stopping.set()
        self.proxy.stop()
        with self.lock:
            for workload in self.workloads.values():
                self._stop(workload)


def _service_host(server: str) -> dict[str, str]:
    """KUBERNETES_SERVICE_HOST and _PORT for an API server URL (here its own address, not a ClusterIP)."""
    if not server:
        return {}
    location = urlsplit(server)
    return {
        "KUBERNETES_SERVICE_HOST": str(location.hostname),
        "KUBERNETES_SERVICE_PORT": str(location.port or 443),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--volume-dir", default="", help="pods' service-account volumes (default: LOG_DIR/volumes)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(options.kubeconfig)  # type: ignore[no-untyped-call]
    os.makedirs(options.log_dir, exist_ok=True)
    server = client.Configuration.get_default_copy().host
    supervisor = Supervisor(client.CoreV1Api(), options.log_dir, options.volume_dir, server)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
    try:
        supervisor.run()
    finally:
        supervisor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
