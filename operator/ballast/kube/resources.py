"""Where each kind the operator reads or writes lives in the API: group, version, plural, scope."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if subresource:
            base += f"/{subresource}"
        return base


MODEL_DEPLOYMENTS = Resource("ballast.dev", "v1alpha1", "modeldeployments")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
CONTROLLER_REVISIONS = Resource("apps", "v1", "controllerrevisions")
SERVICES = Resource("", "v1", "services")
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
BUDGETS = Resource("policy", "v1", "poddisruptionbudgets")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
GATEWAYS = Resource("gateway.networking.k8s.io", "v1", "gateways")
GATEWAY_CLASSES = Resource("gateway.networking.k8s.io", "v1", "gatewayclasses", namespaced=False)
KILL_SWITCHES = Resource("ballast.dev", "v1alpha1", "killswitches")
CLUSTER_KILL_SWITCHES = Resource("ballast.dev", "v1alpha1", "clusterkillswitches", namespaced=False)
