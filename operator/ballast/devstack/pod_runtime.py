"""What the supervisor runs for a container, and how it probes it: the kubelet's rules, on one machine.

Images are never pulled here. A container's command line follows Kubernetes' rules over the image's
own ENTRYPOINT and CMD, which the local stack knows for Ballast's image (`IMAGES`; a test holds them to
the Dockerfile). A command line that starts with `ballast` runs this checkout's Ballast
(`python -m ballast`): the operator the chart deploys, the reject responder the operator deploys. Any
other container is a model server, played by the simulator.

Pods have no network namespaces here: each has its own loopback address on the machine's network. A
Ballast container that binds all interfaces (`0.0.0.0` in its arguments, or the responder's default)
binds its pod's address instead, so replicas on the same port do not collide.
"""

from __future__ import annotations

import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ballast.workloads.responder_manifests import DEFAULT_IMAGE

ALL_INTERFACES = "0.0.0.0"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]


def repository(image: str) -> str:
    """An image reference without its tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


# The images the local stack can run, by repository (any tag or digest).
IMAGES: dict[str, ImageConfig] = {repository(DEFAULT_IMAGE): ImageConfig(entrypoint=("ballast",), cmd=("run",))}


def expand(value: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` from the container's env, as the kubelet expands command and args; `$$` is a literal `$`, and an
    unknown variable stays as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def command_line(command: list[str], args: list[str], image: str, env: Mapping[str, str]) -> list[str]:
    """What a container runs: `command` replaces the image's ENTRYPOINT (and drops its CMD), `args` replace CMD."""
    known = IMAGES.get(repository(image))
    entry = command or list(known.entrypoint if known else ())
    rest = args or ([] if command or known is None else list(known.cmd))
    return [expand(part, env) for part in entry + rest]


def runs_ballast(line: list[str]) -> bool:
    return line[:1] == ["ballast"]


def ballast_program(line: list[str], address: str) -> list[str] | None:
    """This checkout's Ballast for a `ballast ...` command line, bound to the pod's address; None for others."""
    if not runs_ballast(line):
        return None
    arguments = [part.replace(ALL_INTERFACES, address) for part in line[1:]]
    if arguments[:1] == ["responder"] and not any(a == "--host" or a.startswith("--host=") for a in arguments):
        arguments.append(f"--host={address}")  # the responder binds all interfaces by default
    return [sys.executable, "-m", "ballast", *arguments]


@dataclass(frozen=True)
class Probe:
    """One of a container's probes (httpGet or tcpSocket), with the kubelet's defaults."""

    port: int
    path: str | None  # None: a TCP connect
    period: float = 10.0
    timeout: float = 1.0
    initial_delay: float = 0.0
    failure_threshold: int = 3
    success_threshold: int = 1

    @classmethod
    def of(cls, probe: Any, named_ports: Mapping[str, int]) -> Probe | None:
        """From the kubernetes client's V1Probe; None when absent or of a kind the local stack cannot run (exec,
        grpc)."""
        if probe is None:
            return None
        action = probe.http_get or probe.tcp_socket
        if action is None:
            return None
        port = action.port if isinstance(action.port, int) else named_ports.get(str(action.port))
        if port is None:
            return None
        return cls(
            port=int(port),
            path=(probe.http_get.path or "/") if probe.http_get else None,
            period=float(probe.period_seconds or 10),
            timeout=float(probe.timeout_seconds or 1),
            initial_delay=float(probe.initial_delay_seconds or 0),
            failure_threshold=int(probe.failure_threshold or 3),
            success_threshold=int(probe.success_threshold or 1),
        )

    def succeeds(self, address: str) -> bool:
        """An HTTP GET answered 200-399, or a TCP connection accepted, within the timeout."""
        if self.path is None:
            return accepts(address, self.port, self.timeout)
        try:
            with urllib.request.urlopen(f"http://{address}:{self.port}{self.path}", timeout=self.timeout) as answer:
                return 200 <= int(answer.status) < 400
        except urllib.error.HTTPError as error:
            return 200 <= error.code < 400
        except OSError:
            return False


def accepts(address: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something listens on address:port."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class ProbeState:
    """A probe's consecutive results, and when it runs next (the kubelet's bookkeeping)."""

    probe: Probe
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0

    def due(self, now: float, started: float) -> bool:
        return now >= max(self.next_at, started + self.probe.initial_delay)

    def record(self, now: float, ok: bool) -> None:
        self.next_at = now + self.probe.period
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)

    @property
    def passed(self) -> bool:
        return self.successes >= self.probe.success_threshold

    @property
    def failed(self) -> bool:
        return self.failures >= self.probe.failure_threshold


@dataclass(frozen=True)
class ProbeVerdict:
    ready: bool | None = None  # None: as it was
    restart: str = ""  # the probe whose failures restart the container


def run_probes(states: Mapping[str, ProbeState], address: str, started: float, now: float) -> ProbeVerdict:
    """The due probes of a running container, as the kubelet runs them: nothing else until the startup probe
    passes; a failed startup or liveness probe restarts the container; the readiness probe decides Ready, and
    without one a started container is Ready."""
    for kind in ("startup", "liveness", "readiness"):
        state = states.get(kind)
        if state is None or (kind == "startup" and state.passed):
            continue
        if state.due(now, started):
            state.record(now, state.probe.succeeds(address))
        if kind != "readiness" and state.failed:
            return ProbeVerdict(restart=kind)
        if kind == "startup" and not state.passed:
            return ProbeVerdict()
    readiness = states.get("readiness")
    if readiness is None:
        return ProbeVerdict(ready=True)
    return ProbeVerdict(ready=True if readiness.passed else False if readiness.failed else None)
