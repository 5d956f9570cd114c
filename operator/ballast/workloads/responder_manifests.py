"""Render the responder of a `reject` fallback: one small Deployment and Service per ModelDeployment.

It runs whenever the spec has a reject fallback, so a kill switch finds it warm: two replicas by
default, spread over nodes, and a PodDisruptionBudget that keeps one serving through drains. Its objects carry
the deployment label (their events reach the owner's reconcile) but no revision label, and its
pods are selected by their own label, so no revision Service or Prometheus revision ever sees them.
"""

from __future__ import annotations

from ballast import __version__
from ballast.api.modeldeployment import Reject
from ballast.workloads.render import DEPLOYMENT_LABEL, MANAGED_BY, RESTRICTED_CONTEXT, Manifest, owner_reference

RESPONDER_PORT = 8080
RESPONDER_LABEL = "ballast.dev/responder-for"
DEFAULT_IMAGE = f"ghcr.io/ballast-dev/ballast:{__version__}"


def responder_name(deployment: str) -> str:
    return f"{deployment}-reject"


def _metadata(md: Manifest) -> Manifest:
    name = md["metadata"]["name"]
    return {
        "name": responder_name(name),
        "namespace": md["metadata"]["namespace"],
        "labels": {**MANAGED_BY, DEPLOYMENT_LABEL: name, RESPONDER_LABEL: name},
        "ownerReferences": [owner_reference(md)],
    }


def responder_deployment(md: Manifest, reject: Reject, image: str) -> Manifest:
    selector = {RESPONDER_LABEL: md["metadata"]["name"]}
    container: Manifest = {
        "name": "responder",
        "image": image,
        "command": ["ballast", "responder"],
        "args": [
            f"--port={RESPONDER_PORT}",
            f"--status={reject.status}",
            f"--message={reject.message}",
            f"--retry-after={reject.retry_after}",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "http", "containerPort": RESPONDER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {**RESTRICTED_CONTEXT, "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(md),
        "spec": {
            "replicas": reject.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**MANAGED_BY, **selector}},
                "spec": {
                    "containers": [container],
                    # Best effort: replicas on different nodes, so one node going away leaves one serving.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                },
            },
        },
    }


def has_disruption_budget(reject: Reject) -> bool:
    """One responder pod stays through voluntary disruptions (drains); no budget with a single replica, which a
    budget would only make undrainable."""
    return reject.replicas >= 2


def responder_disruption_budget(md: Manifest, reject: Reject) -> Manifest | None:
    if not has_disruption_budget(reject):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(md),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {RESPONDER_LABEL: md["metadata"]["name"]}}},
    }


def responder_service(md: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md),
        "spec": {
            "selector": {RESPONDER_LABEL: md["metadata"]["name"]},
            "ports": [{"name": "http", "port": RESPONDER_PORT, "targetPort": "http"}],
        },
    }
