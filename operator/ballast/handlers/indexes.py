"""In-memory indexes (kopf): switches, namespaces, ReferenceGrants and ModelDeployments.

kopf fills every index from its initial listing before it runs any handler, so the first reconcile
after a restart already knows every engaged switch: a switched deployment never flaps back.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from ballast.rollout.switches import DeploymentEntry, Switch
from ballast.switchboard import CLUSTER_KEY, deployment_entry, switch_of
from ballast.traffic.grants import Grant, grant_of

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


INDEX_NAMES = (
    "ballast_namespaced_switches",
    "ballast_cluster_switches",
    "ballast_namespaces",
    "ballast_reference_grants",
    "ballast_model_deployments",
)
