"""A blocking API client for command-line tools (`kubectl ballast`), talking to the cluster the way kubectl does:
`--kubeconfig` (or $KUBECONFIG), `--context`, the context's namespace unless `-n` names one, `--as`, and the user
as the API server knows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from ballast.kube.client import client_settings
from ballast.kube.resources import Resource

Object = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT_SECONDS = 30.0
USER_AGENT = "kubectl-ballast"


class ClusterError(RuntimeError):
    """What the API server (or the kubeconfig) refused, said the way kubectl says it."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"Error from server ({reason}): {message}" if status else f"error: {message}")
        self.status = status


@dataclass
class Connection:
    http: httpx.Client
    namespace: str

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        try:
            response = self.http.request(method, path, json=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as error:
            raise ClusterError(0, "", f"cannot reach the API server: {error}") from None
        if response.is_error:
            raise _cluster_error(response)
        return response.json()

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Object:
        result: Object = self.request("GET", resource.path(namespace or self.namespace, name))
        return result

    def list(self, resource: Resource, namespace: str | None, labels: str = "") -> list[Object]:
        """Every object of `resource` in `namespace` (None: all namespaces)."""
        path = resource.path(namespace) + (f"?labelSelector={quote(labels)}" if labels else "")
        items: list[Object] = self.request("GET", path).get("items", [])
        return items

    def patch_annotations(self, resource: Resource, name: str, annotations: dict[str, str | None]) -> Object:
        """A merge patch of metadata.annotations alone (None removes one): the spec is never sent."""
        body = {"metadata": {"annotations": annotations}}
        result: Object = self.request("PATCH", resource.path(self.namespace, name), body, MERGE_PATCH)
        return result

    def username(self) -> str:
        """Who the API server says this client is (a SelfSubjectReview): a user's name, or
        system:serviceaccount:<namespace>:<name> for a service account."""
        review = self.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        return str(review["status"]["userInfo"]["username"])


def connect(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    impersonate: str | None = None,
    groups: list[str] | None = None,
) -> Connection:
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        contexts, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as error:
        raise ClusterError(0, "", f"cannot load the kubeconfig: {error}") from None
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    default = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    settings = client_settings(configuration, TIMEOUT_SECONDS, user_agent=USER_AGENT)
    headers = list(settings.pop("headers").items())
    if impersonate:  # as kubectl --as does: the API server authorizes the request as that user
        headers += [("Impersonate-User", impersonate)] + [("Impersonate-Group", group) for group in groups or []]
    http = httpx.Client(**settings, headers=headers)
    return Connection(http, namespace or default)


def _cluster_error(response: httpx.Response) -> ClusterError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    reason = body.get("reason") or response.reason_phrase or "Unknown"
    return ClusterError(response.status_code, str(reason), str(body.get("message") or response.text))
