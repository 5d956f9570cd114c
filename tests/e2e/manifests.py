"""Small builders for the workloads e2e tests create."""

from __future__ import annotations

from typing import Any

from ballast.devstack.dataplane import GATEWAY_NAME, GATEWAY_NAMESPACE, MODEL_LABEL, REVISION_LABEL
from ballast.devstack.demo import RESTRICTED

__all__ = ["RESTRICTED", "deployment", "http_route", "revision"]


def deployment(
    name: str,
    namespace: str,
    *,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    security_context: dict[str, Any] | None = None,
    port: int | None = 8000,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    container: dict[str, Any] = {
        "name": "server",
        "image": "model-server:simulated",
        "args": ["--model", "sim-model"],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "securityContext": RESTRICTED if security_context is None else security_context,
    }
    if port:
        container["ports"] = [{"name": "http", "containerPort": port}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": [container]}},
        },
    }


def revision(
    name: str, namespace: str, *, model: str, replicas: int, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A model revision as Ballast will render it: a Deployment and a Service of the same name."""
    labels = {MODEL_LABEL: model, REVISION_LABEL: name}
    return [
        deployment(name, namespace, replicas=replicas, env=env, labels=labels),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
        },
    ]


def http_route(name: str, namespace: str, hostname: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            "hostnames": [hostname],
            "rules": [
                {"backendRefs": [{"name": svc, "port": 8000, "weight": weight} for svc, weight in weights.items()]}
            ],
        },
    }
