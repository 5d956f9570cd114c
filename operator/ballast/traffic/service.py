"""Service router: one Service across every revision's pods; the split is the replica ratio.

For clusters without a Gateway. It cannot mirror, match headers or reach a fallback Service (the
CRD refuses such specs), and its weights are approximate: they follow replica counts, which the
decision core sets from the weights.
"""

from __future__ import annotations

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.types import Condition
from ballast.kube.client import KubeApi
from ballast.kube.resources import SERVICES, Resource
from ballast.traffic.router import Backends, Capabilities, Manifest
from ballast.workloads.render import DEPLOYMENT_LABEL, MANAGED_BY, owner_reference


def build_service(md: Manifest, spec: ModelDeploymentSpec, backends: Backends) -> Manifest:
    """One Service over every revision's pods; it targets their port by name when they share one, since a
    canary may listen on another port than the stable revision."""
    name = md["metadata"]["name"]
    target: int | str = backends.port_name or backends.port(backends.stable)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": md["metadata"]["namespace"],
            "labels": {**MANAGED_BY, DEPLOYMENT_LABEL: name},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "selector": {DEPLOYMENT_LABEL: name},
            "ports": [{"name": "http", "port": spec.traffic.port, "targetPort": target}],
        },
    }


class ServiceRouter:
    capabilities = Capabilities(weights=False, header_match=False, mirror=False, fallback_service=False)

    async def reconcile(
        self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, current: Manifest | None
    ) -> None:
        await api.apply(SERVICES, build_service(md, spec, backends), current)

    def owned(self, md: Manifest) -> tuple[Resource, str]:
        return SERVICES, md["metadata"]["name"]

    async def finalize(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> None:
        await api.delete(SERVICES, md["metadata"]["namespace"], md["metadata"]["name"])

    async def can_mirror(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> bool:
        return False

    def watched_route(self, md: Manifest, spec: ModelDeploymentSpec) -> str | None:
        return None  # a Service is served by kube-proxy as written: there is no acceptance to wait for

    def acceptance(
        self, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, route: Manifest | None
    ) -> Condition | None:
        return None
