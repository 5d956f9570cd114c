"""Render a revision's children: Deployment, Service, HorizontalPodAutoscaler, ControllerRevision.

Pure functions from (the ModelDeployment, a revision, its recorded inputs) to manifests. What
defines each revision (template, model name, port: `api/revision.py`) is kept in a
ControllerRevision owned by the ModelDeployment, and a revision's pods and Service are rendered
from that record alone, so a revision whose inputs are no longer in the spec (the stable one
during a canary) is re-rendered exactly as it started.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ballast import API_VERSION
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import MODEL_NAME_KEY, PORT_KEY

DEPLOYMENT_LABEL = "ballast.dev/deployment"
REVISION_LABEL = "ballast.dev/revision"
MODEL_LABEL = "ballast.dev/model"
ROLE_LABEL = "ballast.dev/role"
MANAGED_BY = {"app.kubernetes.io/managed-by": "ballast"}
SERVER_CONTAINER = "server"
# The image shorthand runs under Pod Security `restricted` unless the user writes a template.
RESTRICTED_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

Manifest = dict[str, Any]


def workload_name(deployment: str, revision: str) -> str:
    return f"{deployment}-{revision}"


def label_value(text: str) -> str:
    """A label-safe form of a free-form name (model names may hold `/` and `:`)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return cleaned or "model"


def owner_reference(md: Manifest) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "name": md["metadata"]["name"],
        "uid": md["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _metadata(md: Manifest, name: str, labels: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": md["metadata"]["namespace"],
        "labels": {**MANAGED_BY, **labels},
        "ownerReferences": [owner_reference(md)],
    }


def model_name(inputs: dict[str, Any], spec: ModelDeploymentSpec) -> str:
    """The model name a revision's pods carry (the spec's, for a revision recorded before it was part of one)."""
    return str(inputs.get(MODEL_NAME_KEY) or spec.model.name)


def served_port(inputs: dict[str, Any], spec: ModelDeploymentSpec) -> int:
    """The port a revision's server listens on and its Service exposes (the spec's, for an older record)."""
    return int(inputs.get(PORT_KEY) or spec.traffic.port)


def port_name(inputs: dict[str, Any], spec: ModelDeploymentSpec) -> str | None:
    """The name a revision's pods give the port they serve on, if any (None for a revision not recorded)."""
    if "template" not in inputs and "image" not in inputs:
        return None
    port = served_port(inputs, spec)
    containers = pod_template(inputs, spec).get("spec", {}).get("containers") or []
    names = [p.get("name") for c in containers for p in c.get("ports") or [] if p.get("containerPort") == port]
    return names[0] if names and names[0] else None


def revision_labels(md: Manifest, spec: ModelDeploymentSpec, revision: str, inputs: dict[str, Any]) -> dict[str, str]:
    """Pod labels: stable for the life of a revision (a role change must not restart pods)."""
    return {
        DEPLOYMENT_LABEL: md["metadata"]["name"],
        REVISION_LABEL: revision,
        MODEL_LABEL: label_value(model_name(inputs, spec)),
    }


def pod_template(inputs: dict[str, Any], spec: ModelDeploymentSpec) -> Manifest:
    """The pod template of a revision from what defines it: the user's template, or the image shorthand."""
    if "template" in inputs:
        return copy.deepcopy(inputs["template"])
    container: Manifest = {
        "name": SERVER_CONTAINER,
        "image": inputs["image"],
        "ports": [{"name": "http", "containerPort": served_port(inputs, spec)}],
        "securityContext": RESTRICTED_CONTEXT,
    }
    for key in ("command", "args", "env"):
        if key in inputs:
            container[key] = copy.deepcopy(inputs[key])
    return {"spec": {"containers": [container]}}


def gpus_per_pod(pod: Manifest) -> int:
    """GPUs one pod of this template requests: extended resources named `*/gpu` (nvidia.com/gpu, amd.com/gpu),
    from each container's limits (which extended resources require) or requests."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        for name, quantity in asked.items():
            if name.endswith("/gpu") and str(quantity).isdigit():
                total += int(str(quantity))
    return total


def controller_revision(md: Manifest, revision: str, revision_inputs: dict[str, Any], number: int) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": _metadata(
            md,
            workload_name(md["metadata"]["name"], revision),
            {
                DEPLOYMENT_LABEL: md["metadata"]["name"],
                REVISION_LABEL: revision,
            },
        ),
        "data": revision_inputs,
        "revision": number,
    }


def deployment(
    md: Manifest, spec: ModelDeploymentSpec, revision: str, role: str, replicas: int, inputs: dict[str, Any]
) -> Manifest:
    name = workload_name(md["metadata"]["name"], revision)
    labels = revision_labels(md, spec, revision, inputs)
    pod = pod_template(inputs, spec)
    pod_metadata = pod.setdefault("metadata", {})
    pod_metadata["labels"] = {**pod_metadata.get("labels", {}), **labels}
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(md, name, {**labels, ROLE_LABEL: role}),
        "spec": {
            "selector": {"matchLabels": {DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL], REVISION_LABEL: revision}},
            "template": pod,
        },
    }
    # With an autoscaler the HPA owns the replica count; serving roles only, retired ones go to zero.
    if spec.model.autoscaling is None or role not in ("stable", "canary", "previous") or replicas == 0:
        body["spec"]["replicas"] = replicas
    return body


def service(md: Manifest, spec: ModelDeploymentSpec, revision: str, role: str, inputs: dict[str, Any]) -> Manifest:
    labels = revision_labels(md, spec, revision, inputs)
    port = served_port(inputs, spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md, workload_name(md["metadata"]["name"], revision), {**labels, ROLE_LABEL: role}),
        "spec": {
            "selector": {DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL], REVISION_LABEL: revision},
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def autoscaler(md: Manifest, spec: ModelDeploymentSpec, revision: str, inputs: dict[str, Any]) -> Manifest | None:
    scaling = spec.model.autoscaling
    if scaling is None:
        return None
    name = workload_name(md["metadata"]["name"], revision)
    body: Manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(md, name, revision_labels(md, spec, revision, inputs)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
        },
    }
    if scaling.target_cpu_utilization is not None:
        body["spec"]["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
                },
            }
        ]
    return body
