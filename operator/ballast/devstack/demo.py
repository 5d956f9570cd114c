"""The demo: a model deployment walked through a canary, a kill switch and a rollback, on real traffic.

`ballast dev demo` runs it on a fresh local stack with the operator under its RBAC identity; an e2e
test runs the same scenario, so the demo never rots. Every line it prints is read from the cluster
or from the answers the load generator got through the Gateway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import GATEWAY_NAME, GATEWAY_NAMESPACE, DataPlane

Say = Callable[[str], None]
NAME = "support-bot"
# What Pod Security `restricted` demands of every container.
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def rules_engine(namespace: str, name: str = "faq-rules") -> list[dict[str, Any]]:
    """A stand-in for a rules engine that answers when the model must not."""
    labels = {"app": name}
    container = {"name": "server", "image": f"{name}:simulated", "securityContext": RESTRICTED,
                 "ports": [{"name": "http", "containerPort": 8000}]}  # fmt: skip
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}},
    ]  # fmt: skip


def model_deployment(namespace: str, env: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"team": "support"}},
        "spec": {
            "model": {"name": "llama-3.1-8b-instruct", "image": "vllm/vllm-openai:v0.11.0", "replicas": 2,
                      "env": [{"name": k, "value": v} for k, v in env.items()]},
            "traffic": {"parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
                        "hostnames": [f"{NAME}.{namespace}.test"]},
            "contract": {"minRequests": 20, "window": "15s", "objectives": [
                {"name": "p95-latency", "preset": "e2e-latency-p95", "max": 0.5},
                {"name": "error-rate", "preset": "error-rate", "max": 0.05}]},
            "rollout": {"interval": "3s", "failureLimit": 1,
                        "steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}, {"weight": 100}]},
            "fallbacks": [{"name": "rules", "service": {"name": "faq-rules", "port": 8000}},
                          {"name": "sorry", "reject": {"message": "the assistant is paused", "retryAfter": 30}}],
            "killSwitch": {"fallback": "rules"},
        },
    }  # fmt: skip


class Scenario:
    def __init__(self, cluster: Cluster, plane: DataPlane, namespace: str, say: Say) -> None:
        self.cluster, self.plane, self.namespace, self.say = cluster, plane, namespace, say
        self.host = f"{NAME}.{namespace}.test"
        self.started = time.monotonic()

    def log(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def status(self) -> dict[str, Any]:
        body = json.loads(self.cluster.kubectl("get", "mdep", NAME, "-n", self.namespace, "-o", "json").stdout)
        found: dict[str, Any] = body.get("status") or {}
        return found

    def wait(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def holds() -> bool:
            seen.clear()
            seen.update(self.status())
            return check(seen)

        wait_until(holds, timeout, what, interval=0.5)
        return seen

    def sample(self, total: int = 60) -> str:
        """Real requests through the Gateway: which backends answered, with which status codes."""
        report = loadgen.run(f"{self.plane.gateway_url}/v1/chat/completions", total=total, rate=100,
                             concurrency=8, host=self.host, max_seconds=30)  # fmt: skip
        groups: dict[str, int] = {}
        for backend, count in report.by_backend.items():
            group = backend.rsplit("-", 2)[0] if backend.count("-") >= 2 else backend
            groups[group] = groups.get(group, 0) + count
        split = ", ".join(f"{name} {100 * n / report.sent:.0f}%" for name, n in sorted(groups.items()))
        codes = ", ".join(f"{code}x{n}" for code, n in sorted(report.by_status.items()))
        return f"{split} ({codes})"

    def apply(self, manifests: list[dict[str, Any]]) -> None:
        self.cluster.apply(manifests)

    def run(self) -> None:
        namespace = self.namespace
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}}, *rules_engine(namespace)])  # fmt: skip
        self.apply([model_deployment(namespace, {"SIM_LATENCY": "0.05"})])
        first = self.wait("the first revision", lambda s: s.get("phase") == "Stable")
        stable = first["stableRevision"]
        wait_until(lambda: f"{NAME}-{stable}" in self.sample(20), 60, "the first revision to answer")
        self.log(f"ModelDeployment {namespace}/{NAME} is Stable: revision {stable}; users see {self.sample()}")
        self.canary(stable)
        self.kill_switch()
        self.bad_canary()

    def canary(self, stable: str) -> None:
        load = loadgen.Background(f"{self.plane.gateway_url}/v1/chat/completions", rate=25, concurrency=8,
                                  host=self.host)  # fmt: skip
        try:
            self.apply([model_deployment(self.namespace, {"SIM_LATENCY": "0.06"})])
            self.log("a new template (latency 0.05s -> 0.06s): a canary, judged by Prometheus on every step")
            weight = -1
            while True:

                def moved(s: dict[str, Any], weight: int = weight) -> bool:
                    promoted = s.get("phase") == "Stable" and s.get("stableRevision") != stable
                    return promoted or s.get("weights", {}).get("canary") not in (weight, None)

                current = self.wait("the next step", moved, 180)
                if current.get("phase") == "Stable":
                    break
                weight = current["weights"]["canary"]
                checked = current.get("lastAnalysis") or {}
                values = ", ".join(
                    f"{o['name']} {o.get('value', float('nan')):.3g} ({o['verdict']})"
                    for o in checked.get("objectives", [])
                )
                note = f"; last check: {values}" if values else ""
                self.log(f"{current['phase']}: canary {current['canaryRevision']} at {weight}%{note}; "
                         f"users see {self.sample()}")  # fmt: skip
            self.log(f"promoted: {current['stableRevision']} serves 100% ({self.sample()})")
        finally:
            report = load.stop()
        self.log(f"steady load during the rollout: {report.sent} requests, status {dict(report.by_status)}")

    def kill_switch(self) -> None:
        switch = {"apiVersion": "ballast.dev/v1alpha1", "kind": "KillSwitch",
                  "metadata": {"name": "incident-4711", "namespace": self.namespace},
                  "spec": {"selector": {"matchLabels": {"team": "support"}},
                           "reason": "answers cite a withdrawn policy document"}}  # fmt: skip
        started = time.monotonic()
        self.apply([switch])
        wait_until(lambda: self.sample(10).startswith("faq-rules 100%"), 30, "users at the fallback", interval=0.05)
        state = self.status()["killSwitch"]
        self.log(f"KillSwitch incident-4711 created: users at fallback {state['fallback']} after "
                 f"{time.monotonic() - started:.2f}s; users see {self.sample()}")  # fmt: skip
        started = time.monotonic()
        self.cluster.kubectl("delete", "killswitch", "incident-4711", "-n", self.namespace)
        wait_until(lambda: self.sample(10).startswith(f"{NAME}-"), 30, "users back at the model", interval=0.05)
        self.log(f"KillSwitch deleted: users back at the model after {time.monotonic() - started:.2f}s")

    def bad_canary(self) -> None:
        load = loadgen.Background(f"{self.plane.gateway_url}/v1/chat/completions", rate=25, concurrency=8,
                                  host=self.host)  # fmt: skip
        try:
            self.apply([model_deployment(self.namespace, {"SIM_LATENCY": "0.06", "SIM_ERROR_RATE": "0.3"})])
            self.log("a template that fails 30% of requests starts as a canary")
            rolled = self.wait("the rollback", lambda s: s.get("phase") == "RolledBack", 180)
        finally:
            load.stop()
        self.log(f"RolledBack: {rolled['history'][-1]['message']}; users see {self.sample()}")
