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
    kind: str = ""

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


MODEL_DEPLOYMENTS = Resource("ballast.dev", "v1alpha1", "modeldeployments", kind="ModelDeployment")
DEPLOYMENTS = Resource("apps", "v1", "deployments", kind="Deployment")
CONTROLLER_REVISIONS = Resource("apps", "v1", "controllerrevisions", kind="ControllerRevision")
SERVICES = Resource("", "v1", "services", kind="Service")
PODS = Resource("", "v1", "pods", kind="Pod")
EVENTS = Resource("", "v1", "events", kind="Event")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
BUDGETS = Resource("policy", "v1", "poddisruptionbudgets", kind="PodDisruptionBudget")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", kind="HorizontalPodAutoscaler")
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", kind="HTTPRoute")
GATEWAYS = Resource("gateway.networking.k8s.io", "v1", "gateways", kind="Gateway")
GATEWAY_CLASSES = Resource("gateway.networking.k8s.io", "v1", "gatewayclasses", namespaced=False, kind="GatewayClass")
KILL_SWITCHES = Resource("ballast.dev", "v1alpha1", "killswitches", kind="KillSwitch")
CLUSTER_KILL_SWITCHES = Resource(
    "ballast.dev", "v1alpha1", "clusterkillswitches", namespaced=False, kind="ClusterKillSwitch"
)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
SELF_SUBJECT_REVIEWS = Resource(
    "authentication.k8s.io", "v1", "selfsubjectreviews", namespaced=False, kind="SelfSubjectReview"
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")

# The children and the routes the operator writes, by kind: a watch event names the kind, and the client forgets
# what it wrote to an object once that object is gone.
WRITTEN_KINDS = {r.kind: r for r in (DEPLOYMENTS, CONTROLLER_REVISIONS, SERVICES, HPAS, HTTP_ROUTES, BUDGETS)}
