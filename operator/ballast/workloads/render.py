"""Render a revision's children: Deployment, Service, HorizontalPodAutoscaler, ControllerRevision.

Pure functions from (the ModelDeployment, a revision, its template) to manifests. The template of
each revision is kept in a ControllerRevision owned by the ModelDeployment, so a revision whose
template is no longer in the spec (the stable one during a canary) can still be re-rendered.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ballast import API_VERSION
from ballast.api.modeldeployment import ModelDeploymentSpec

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


def revision_labels(md: Manifest, spec: ModelDeploymentSpec, revision: str) -> dict[str, str]:
    """Pod labels: stable for the life of a revision (a role change must not restart pods)."""
    return {
        DEPLOYMENT_LABEL: md["metadata"]["name"],
        REVISION_LABEL: revision,
        MODEL_LABEL: label_value(spec.model.name),
    }


def pod_template(revision_inputs: dict[str, Any], spec: ModelDeploymentSpec) -> Manifest:
    """The pod template of a revision from what defines it: the user's template, or the image shorthand."""
    if "template" in revision_inputs:
        return copy.deepcopy(revision_inputs["template"])
    container: Manifest = {
        "name": SERVER_CONTAINER,
        "image": revision_inputs["image"],
        "ports": [{"name": "http", "containerPort": spec.traffic.port}],
        "securityContext": RESTRICTED_CONTEXT,
    }
    for key in ("command", "args", "env"):
        if key in revision_inputs:
            container[key] = copy.deepcopy(revision_inputs[key])
    return {"spec": {"containers": [container]}}


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
    md: Manifest, spec: ModelDeploymentSpec, revision: str, role: str, replicas: int, template: Manifest
) -> Manifest:
    name = workload_name(md["metadata"]["name"], revision)
    labels = revision_labels(md, spec, revision)
    pod = copy.deepcopy(template)
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


def service(md: Manifest, spec: ModelDeploymentSpec, revision: str, role: str) -> Manifest:
    labels = revision_labels(md, spec, revision)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md, workload_name(md["metadata"]["name"], revision), {**labels, ROLE_LABEL: role}),
        "spec": {
            "selector": {DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL], REVISION_LABEL: revision},
            "ports": [{"name": "http", "port": spec.traffic.port, "targetPort": spec.traffic.port}],
        },
    }


def autoscaler(md: Manifest, spec: ModelDeploymentSpec, revision: str) -> Manifest | None:
    scaling = spec.model.autoscaling
    if scaling is None:
        return None
    name = workload_name(md["metadata"]["name"], revision)
    body: Manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(md, name, revision_labels(md, spec, revision)),
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
