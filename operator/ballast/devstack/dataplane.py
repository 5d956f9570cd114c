"""The live data plane of the local stack: a real Gateway (Traefik), simulated model servers, Prometheus.

Traffic is real HTTP: client -> Traefik on 127.0.0.1 -> the EndpointSlices of the backend Services
-> a simulator bound to each pod's own 127.1.x.y address. Prometheus finds the pods through
Kubernetes service discovery (role pod) against the local API server and relabels pod labels into
`namespace`, `pod`, `model` and `revision`, as it would in a cluster.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ballast.analysis.rules import rules_file
from ballast.api.types import parse_duration, whole_units
from ballast.devstack.cluster import Cluster, free_port, wait_until

GATEWAY_NAMESPACE = "gateway-system"
GATEWAY_NAME = "ai-gateway"
GATEWAY_CLASS = "traefik"
TRAEFIK_CONTROLLER = "traefik.io/gateway-controller"
MODEL_LABEL = "ballast.dev/model"
REVISION_LABEL = "ballast.dev/revision"
DEPLOYMENT_LABEL = "ballast.dev/deployment"

# What Traefik's Gateway API provider reads and the status it writes (from its RBAC reference).
TRAEFIK_RBAC: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", "namespace": GATEWAY_NAMESPACE}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "ballast-dev-traefik"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "services", "secrets", "configmaps", "nodes"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": [
                    "gatewayclasses",
                    "gateways",
                    "httproutes",
                    "grpcroutes",
                    "tcproutes",
                    "tlsroutes",
                    "referencegrants",
                    "backendtlspolicies",
                ],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": [
                    "gatewayclasses/status",
                    "gateways/status",
                    "httproutes/status",
                    "grpcroutes/status",
                    "tcproutes/status",
                    "tlsroutes/status",
                    "backendtlspolicies/status",
                ],
                "verbs": ["update", "patch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "ballast-dev-traefik"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ballast-dev-traefik"},
        "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": GATEWAY_NAMESPACE}],
    },
]


def rules_base_window(scrape_interval: str) -> str:
    """The recording rules' base window: four scrape intervals, so every recorded rate has samples to read."""
    return whole_units(4 * parse_duration(scrape_interval))


def prometheus_config(cluster: Cluster, scrape_interval: str, rule_file: Path | None = None) -> dict[str, Any]:
    pki = cluster.workdir / "pki"

    def relabel(source: str, target: str) -> dict[str, Any]:
        return {"source_labels": [source], "target_label": target}

    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        **({"rule_files": [str(rule_file)]} if rule_file else {}),
        "scrape_configs": [
            {
                "job_name": "model-servers",
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "api_server": cluster.server,
                        "tls_config": {
                            "ca_file": str(pki / "ca.crt"),
                            "cert_file": str(pki / "client-admin.crt"),
                            "key_file": str(pki / "client-admin.key"),
                        },
                    }
                ],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_pod_container_port_number"], "regex": ".+", "action": "keep"},
                    relabel("__meta_kubernetes_namespace", "namespace"),
                    relabel("__meta_kubernetes_pod_name", "pod"),
                    relabel(f"__meta_kubernetes_pod_label_{_label_name(MODEL_LABEL)}", "model"),
                    relabel(f"__meta_kubernetes_pod_label_{_label_name(REVISION_LABEL)}", "revision"),
                    relabel(f"__meta_kubernetes_pod_label_{_label_name(DEPLOYMENT_LABEL)}", "deployment"),
                ],
            }
        ],
    }


def _label_name(label: str) -> str:
    """How Prometheus' Kubernetes SD spells a label in its meta labels."""
    return "".join(c if c.isalnum() else "_" for c in label)


@dataclass
class DataPlane:
    """Started after the control plane; its processes are the cluster's, so `Cluster.stop()` stops them too."""

    cluster: Cluster
    scrape_interval: str = "1s"
    gateway_port: int = 0
    prometheus_port: int = 0

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start(self) -> None:
        cluster = self.cluster
        cluster.spawn(
            "supervisor",
            [
                sys.executable, "-m", "ballast.devstack.supervisor",
                f"--kubeconfig={cluster.kubeconfig}", f"--log-dir={cluster.workdir / 'logs' / 'simulators'}",
                f"--volume-dir={cluster.workdir / 'pod-volumes'}",
            ],
        )  # fmt: skip
        self._start_traefik()
        self._start_prometheus()

    def _start_traefik(self) -> None:
        cluster = self.cluster
        cluster.apply(TRAEFIK_RBAC)
        token = cluster.kubectl("create", "token", "traefik", "-n", GATEWAY_NAMESPACE, "--duration=24h").stdout.strip()
        self.gateway_port, ping_port = free_port(), free_port()
        cluster.spawn(
            "traefik",
            [
                str(cluster.binaries.traefik),
                f"--entryPoints.web.address=127.0.0.1:{self.gateway_port}",
                f"--entryPoints.traefik.address=127.0.0.1:{ping_port}",
                "--ping=true",
                "--providers.kubernetesgateway=true",
                f"--providers.kubernetesgateway.endpoint={cluster.server}",
                f"--providers.kubernetesgateway.token={token}",
                f"--providers.kubernetesgateway.certAuthFilePath={cluster.workdir / 'pki' / 'ca.crt'}",
                "--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
                # Backends through Service ClusterIPs, served by the supervisor (EndpointSlices cannot
                # hold the loopback addresses of kwok pods).
                "--providers.kubernetesgateway.nativeLBByDefault=true",
                # A new backend connection per request: the local kube-proxy balances connections, and a
                # pooled connection it has just closed would surface as a 502.
                "--serversTransport.maxIdleConnsPerHost=-1",
                # Traefik batches provider events for 2s by default; a route change (a kill switch) should
                # be served as soon as it is written.
                "--providers.providersThrottleDuration=100ms",
                # No network but the loopback: no update checks, no usage reports.
                "--global.checkNewVersion=false",
                "--global.sendAnonymousUsage=false",
                "--log.level=INFO",
            ],
        )
        cluster.apply(
            [
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": GATEWAY_CLASS},
                    "spec": {"controllerName": TRAEFIK_CONTROLLER},
                },
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
                    "spec": {
                        "gatewayClassName": GATEWAY_CLASS,
                        # Traefik binds a listener to the entry point with the same port.
                        "listeners": [
                            {
                                "name": "http",
                                "protocol": "HTTP",
                                "port": self.gateway_port,
                                "allowedRoutes": {"namespaces": {"from": "All"}},
                            }
                        ],
                    },
                },
            ]
        )
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{ping_port}/ping"), 60, "Traefik /ping")
        wait_until(self._gateway_programmed, 60, f"Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} to be Programmed")

    def _gateway_programmed(self) -> bool:
        self.cluster.check_alive()
        result = self.cluster.kubectl("get", "gateway", GATEWAY_NAME, "-n", GATEWAY_NAMESPACE, "-o", "json")
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Programmed" and c["status"] == "True" for c in conditions)

    def _start_prometheus(self) -> None:
        cluster = self.cluster
        config_file, rule_file = cluster.workdir / "prometheus.yml", cluster.workdir / "ballast-rules.yml"
        # The burn-rate watch's recording rules, exactly as `ballast rules --format file` prints them.
        rule_file.write_text(yaml.safe_dump(rules_file(rules_base_window(self.scrape_interval)), sort_keys=False))
        config_file.write_text(yaml.safe_dump(prometheus_config(cluster, self.scrape_interval, rule_file)))
        self.prometheus_port = free_port()
        cluster.spawn(
            "prometheus",
            [
                str(cluster.binaries.prometheus),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={cluster.workdir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=6h",
            ],
        )
        wait_until(lambda: _http_ok(f"{self.prometheus_url}/-/ready"), 60, "Prometheus /-/ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query; the result vector."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
