"""In-memory indexes (kopf): switches, namespaces, ReferenceGrants, ModelDeployments, Services, HTTPRoutes
and the children of every ModelDeployment.

kopf fills every index from its initial listing before it runs any handler, so the first reconcile
after a restart already knows every engaged switch: a switched deployment never flaps back.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import kopf
from pydantic import ValidationError

from ballast.rollout.switch_selection import DeploymentEntry, Switch
from ballast.shell.cluster_view import CLUSTER_KEY, deployment_entry, route_summary, switch_of
from ballast.shell.references import DeploymentRefs, ServiceFacts, deployment_refs, service_facts
from ballast.traffic.grants import Grant, grant_of
from ballast.workloads.render import DEPLOYMENT_LABEL

CHILD_LABELS = {DEPLOYMENT_LABEL: kopf.PRESENT}

log = logging.getLogger("ballast.indexes")


def _switch(body: kopf.Body) -> Switch | None:
    try:
        return switch_of(body)
    except ValidationError as error:  # admission validates; this guards an older or hand-edited CRD
        log.error("%s %s is not valid and is ignored: %s", body["kind"], body["metadata"]["name"], error)
        return None


@kopf.index("ballast.dev", "v1alpha1", "killswitches")
def ballast_namespaced_switches(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, Switch]:
    switch = _switch(body)
    return {namespace: switch} if switch else {}


@kopf.index("ballast.dev", "v1alpha1", "clusterkillswitches")
def ballast_cluster_switches(body: kopf.Body, **_: Any) -> dict[str, Switch]:
    switch = _switch(body)
    return {CLUSTER_KEY: switch} if switch else {}


@kopf.index("", "v1", "namespaces")
def ballast_namespaces(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    return {name: dict(labels)}


@kopf.index("gateway.networking.k8s.io", "v1beta1", "referencegrants")
def ballast_reference_grants(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, Grant]:
    return {namespace: grant_of(dict(body))}


@kopf.index("ballast.dev", "v1alpha1", "modeldeployments")
def ballast_model_deployments(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, DeploymentEntry]:
    return {namespace: deployment_entry(body)}


@kopf.index("", "v1", "services")
def ballast_services(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, ServiceFacts]:
    """Every Service's ports, controller and Ballast labels: fallback Services, and names a child would take,
    are checked without an API call."""
    return {(namespace, name): service_facts(body)}


@kopf.index("ballast.dev", "v1alpha1", "modeldeployments")
def ballast_deployment_references(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, DeploymentRefs]:
    """What each ModelDeployment refers to (routeRef, fallback Services): claims and cycles across deployments."""
    return {namespace: deployment_refs(body)}


@kopf.index("gateway.networking.k8s.io", "v1", "httproutes")
def ballast_routes(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    """Every HTTPRoute's rules and what its Gateways reported (Accepted, ResolvedRefs), owned or named by a
    routeRef: status reports what the Gateway accepted, read from memory."""
    return {(namespace, name): route_summary(body)}


INDEX_NAMES = (
    "ballast_namespaced_switches",
    "ballast_cluster_switches",
    "ballast_namespaces",
    "ballast_reference_grants",
    "ballast_model_deployments",
    "ballast_services",
    "ballast_routes",
)
REFERENCE_INDEX_NAMES = ("ballast_services", "ballast_deployment_references")


# The children of every ModelDeployment, by (namespace, deployment): a reconcile reads them from memory.
def _child_key(namespace: str | None, labels: kopf.Labels) -> tuple[str | None, str]:
    return (namespace, labels[DEPLOYMENT_LABEL])


def _trimmed(body: kopf.Body, *, spec: bool = False, status: bool = False) -> dict[str, Any]:
    """What a reconcile reads of a child: metadata always, spec and status when asked (a copy, not a live view)."""
    metadata = body["metadata"]
    kept: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: copy.deepcopy(metadata[key])
            for key in (
                "name",
                "namespace",
                "labels",
                "annotations",
                "generation",
                "resourceVersion",
                "ownerReferences",
            )
            if key in metadata
        },
    }
    if spec:
        kept["spec"] = copy.deepcopy(dict(body.get("spec") or {}))
    if status:
        kept["status"] = copy.deepcopy(dict(body.get("status") or {}))
    return kept


@kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS)
def ballast_child_deployments(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body, status=True)}


@kopf.index("", "v1", "pods", labels=CHILD_LABELS)
def ballast_child_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body, status=True)}


@kopf.index("apps", "v1", "controllerrevisions", labels=CHILD_LABELS)
def ballast_child_revisions(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): {**_trimmed(body), "data": copy.deepcopy(body.get("data"))}}


@kopf.index("", "v1", "services", labels=CHILD_LABELS)
def ballast_child_services(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body)}


@kopf.index("gateway.networking.k8s.io", "v1", "httproutes", labels=CHILD_LABELS)
def ballast_child_routes(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=CHILD_LABELS)
def ballast_child_autoscalers(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body)}


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
def ballast_child_budgets(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> Any:
    return {_child_key(namespace, labels): _trimmed(body)}


CHILD_INDEX_NAMES = (
    "ballast_child_deployments",
    "ballast_child_pods",
    "ballast_child_revisions",
    "ballast_child_services",
    "ballast_child_routes",
    "ballast_child_autoscalers",
    "ballast_child_budgets",
)
