"""A small async Kubernetes API client on httpx: the event loop never blocks on the API server.

Credentials come from the kubeconfig or the in-cluster service account, through the `kubernetes`
package's loaders. In a pod the service-account token is a projected file that the kubelet
rotates, so it is read again once a minute and at once when the API server answers 401, never
copied once into the client. Writes of children use server-side apply with one field manager, so
applying the same desired object twice changes nothing and other managers' fields are left alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import os
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config import incluster_config

from ballast.kube.resources import Resource

FIELD_MANAGER = "ballast"
# The API server's whole answer when a JSON patch cannot be applied, a failed `test` operation among them.
JSON_PATCH_NOT_APPLICABLE = "the server rejected our request due to an error in our request"
# Requests in flight at once, per lane. Beyond this they wait here, in order, rather than in httpx's connection
# pool, whose scheduling costs grow with the queue (measured: most of the operator's CPU with 200 queued).
IN_FLIGHT = 8
# Two lanes, each with its own IN_FLIGHT slots: kill-switch writes never queue behind routine reconcile calls.
LANES = ("routine", "switch")
# Whether the request about to be sent belongs in the switch lane; asked per request, so work already under way
# for a deployment moves to the switch lane as soon as a switch is waiting for it.
IN_SWITCH_LANE: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar(
    "IN_SWITCH_LANE", default=lambda: False
)
# An API server shedding load (429, priority and fairness) says when to come back; the wait is capped and the
# request tried again a few times before the caller sees the error.
THROTTLED_RETRIES = 5
THROTTLED_WAIT_CAP = 5.0
Object = dict[str, Any]
# A resourceVersion no object has (etcd revisions never get there): as a precondition of a server-side apply it
# creates the object when it is absent and is a 409 when any object of that name exists (kubectl-tested on the
# local API server: the apply creates, and a second one is refused).
CREATE_ONLY = str(2**63 - 1)
# Where the pod's service-account volume is: the kubelet mounts it at the standard path; the local stack, which
# runs pods as processes on one file system, puts each pod's elsewhere and names it here.
SERVICE_ACCOUNT_DIR_VARIABLE = "BALLAST_SERVICE_ACCOUNT_DIR"


def service_account_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The folder holding the pod's service-account `token`, `ca.crt` and `namespace`."""
    return Path(environ.get(SERVICE_ACCOUNT_DIR_VARIABLE) or Path(incluster_config.SERVICE_TOKEN_FILENAME).parent)


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def namespace_terminating(self) -> bool:
        """A write into a namespace being deleted: its ModelDeployments go with it, nothing to retry."""
        return self.status == 403 and "because it is being terminated" in self.message

    @property
    def lost_race(self) -> bool:
        """Someone wrote first: a stale resourceVersion (409), or a JSON patch whose `test` of the resourceVersion
        no longer holds (422; Ballast's guarded patches test it first, so nothing else fails to apply)."""
        return self.status == 409 or (self.status == 422 and self.message == JSON_PATCH_NOT_APPLICABLE)


class TokenFile(httpx.Auth):
    """A bearer token read from a file: again after `max_age` seconds, and at once (with one retry) on a 401.

    The kubelet rewrites a projected service-account token well before it expires; client-go reads it
    again once a minute too.
    """

    def __init__(self, path: Path, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.max_age = max_age
        self.clock = clock
        self.token = ""
        self.read_at: float | None = None

    def current(self, *, again: bool = False) -> str:
        now = self.clock()
        if again or self.read_at is None or now - self.read_at >= self.max_age:
            self.token = self.path.read_text().strip()
            self.read_at = now
        return self.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self.current()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401 and self.current(again=True) != sent:
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


def in_cluster_configuration(
    token_file: str | None = None, ca_file: str | None = None, environ: Mapping[str, str] = os.environ
) -> Any:
    """The pod's service account: the API server from KUBERNETES_SERVICE_HOST/PORT, its CA and the token file
    (default: in `service_account_dir()`). ConfigException when not in a pod."""
    folder = service_account_dir(environ)
    configuration = k8s_client.Configuration()
    loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=token_file or str(folder / "token"),
        cert_filename=ca_file or str(folder / "ca.crt"),
        environ=environ,
    )
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    return configuration


def client_settings(
    configuration: Any, timeout: float, auth: httpx.Auth | None = None, user_agent: str | None = None
) -> dict[str, Any]:
    """httpx client arguments for a `kubernetes` Configuration: server, TLS, client certificate, bearer token."""
    verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
    if configuration.verify_ssl:
        verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        if not isinstance(verify, ssl.SSLContext):
            verify = ssl.create_default_context()
            verify.check_hostname, verify.verify_mode = False, ssl.CERT_NONE
        verify.load_cert_chain(configuration.cert_file, configuration.key_file)
    headers = {"User-Agent": user_agent} if user_agent else {}
    token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if token and auth is None:
        prefix = configuration.api_key_prefix.get("authorization", "")
        headers["Authorization"] = f"{prefix} {token}".strip() if not token.startswith("Bearer") else token
    return {
        "base_url": configuration.host,
        "verify": verify,
        "headers": headers,
        "auth": auth,
        "timeout": httpx.Timeout(timeout),
    }


def _client_from_configuration(
    configuration: Any, timeout: float, auth: httpx.Auth | None = None, user_agent: str | None = None
) -> httpx.AsyncClient:
    connections = IN_FLIGHT * len(LANES)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(**client_settings(configuration, timeout, auth, user_agent), limits=limits)


def retry_after(response: httpx.Response) -> float:
    """Seconds to wait before sending a throttled (429) request again: the server's Retry-After, capped."""
    try:
        wait = float(response.headers.get("Retry-After", "1"))
    except ValueError:  # an HTTP date: rare from an API server; wait the default
        wait = 1.0
    return min(max(wait, 0.0), THROTTLED_WAIT_CAP)


def _digest(body: Object) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _version(body: Object) -> str:
    """What changes when anyone changes the object's spec: its generation, else its resourceVersion."""
    metadata = body.get("metadata") or {}
    return str(metadata.get("generation") or metadata.get("resourceVersion") or "")


class KubeApi:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.lanes = {lane: asyncio.Semaphore(IN_FLIGHT) for lane in LANES}
        self.sleep: Callable[[float], Any] = asyncio.sleep
        # What this process last applied, per object: (digest of the body, version the API server answered).
        self.applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        # Called before every write is sent; raises to refuse it (leader election: only the leader writes).
        self.write_fence: Callable[[], None] | None = None

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, timeout: float = 30.0, user_agent: str | None = None
    ) -> KubeApi:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        try:
            return cls.in_cluster(timeout=timeout, user_agent=user_agent)
        except k8s_config.ConfigException:
            configuration = k8s_client.Configuration()
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
            return cls(_client_from_configuration(configuration, timeout, user_agent=user_agent))

    @classmethod
    def in_cluster(
        cls,
        token_file: str | None = None,
        ca_file: str | None = None,
        environ: Mapping[str, str] = os.environ,
        timeout: float = 30.0,
        user_agent: str | None = None,
    ) -> KubeApi:
        """The pod's service account (see `in_cluster_configuration`), its token read again as the kubelet
        rotates it."""
        configuration = in_cluster_configuration(token_file, ca_file, environ)
        token = Path(token_file or service_account_dir(environ) / "token")
        return cls(_client_from_configuration(configuration, timeout, TokenFile(token), user_agent))

    async def close(self) -> None:
        await self.http.aclose()

    def forget(self, resource: Resource, namespace: str, name: str) -> None:
        """An object is gone (deleted by anyone, garbage-collected with its owner): drop what was written to it."""
        self.applied.pop((resource.plural, namespace, name), None)

    def wrote(self, resource: Resource, body: Object) -> bool:
        """Whether `body` is what this process last applied, unchanged in spec since (its own write's echo, or a
        status update by someone else)."""
        metadata = body["metadata"]
        recorded = self.applied.get((resource.plural, metadata.get("namespace") or "", metadata["name"]))
        return recorded is not None and recorded[1] == _version(body)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(THROTTLED_RETRIES):
            async with self.lanes["switch" if IN_SWITCH_LANE.get()() else "routine"]:
                if method != "GET" and self.write_fence is not None:
                    self.write_fence()  # checked last, after any wait for a slot: the write goes out now or never
                response = await self.http.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            await self.sleep(retry_after(response))  # outside the lane: a throttled request holds no slot
        return response

    async def _request(self, method: str, path: str, **kwargs: Any) -> Object | None:
        response = await self._send(method, path, **kwargs)
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except json.JSONDecodeError:
                message = response.text
            raise ApiError(response.status_code, message)
        result: Object = response.json()
        return result

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Object | None:
        return await self._request("GET", resource.path(namespace, name))

    async def apply(self, resource: Resource, body: Object, current: Object | None) -> Object | None:
        """Server-side apply of `body` (which carries apiVersion, kind and metadata).

        `current` is the object as last observed. Without one the apply only creates: an object of that name
        that appeared meanwhile (someone else's) is a 409, never adopted. With one, nothing is sent when this
        process already applied the same body and nobody has changed the object since; a change by anyone
        else is re-applied. Returns the object the API server answered, or None when nothing was sent.
        """
        metadata = body["metadata"]
        key = (resource.plural, metadata.get("namespace") or "", metadata["name"])
        digest = _digest(body)
        if current is not None and self.applied.get(key) == (digest, _version(current)):
            return None
        sent = body if current is not None else {**body, "metadata": {**metadata, "resourceVersion": CREATE_ONLY}}
        path = resource.path(metadata.get("namespace"), metadata["name"])
        result = await self._request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(sent),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert result is not None
        self.applied[key] = (digest, _version(result))
        return result

    async def json_patch(self, resource: Resource, namespace: str, name: str, operations: list[Object]) -> Object:
        result = await self._request(
            "PATCH",
            resource.path(namespace, name),
            content=json.dumps(operations),
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert result is not None
        return result

    async def patch_status(
        self, resource: Resource, namespace: str | None, name: str, status: Object, version: str
    ) -> Object:
        """Merge-patch status, only if the object is still at `version` (a lost update is a 409, not silent)."""
        body = {"metadata": {"resourceVersion": version}, "status": status}
        result = await self._request(
            "PATCH",
            resource.path(namespace, name, "status"),
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert result is not None
        return result

    async def replace(self, resource: Resource, namespace: str, name: str, body: Object) -> Object:
        """PUT: a full update, refused with 409 unless `body` carries the object's current resourceVersion."""
        result = await self._request("PUT", resource.path(namespace, name), json=body)
        assert result is not None
        return result

    async def create(self, resource: Resource, namespace: str, body: Object) -> Object:
        result = await self._request("POST", resource.path(namespace), json=body)
        assert result is not None
        return result

    async def create_subresource(
        self, resource: Resource, namespace: str, name: str, subresource: str, body: Object
    ) -> Object:
        """POST to a subresource, such as a ServiceAccount's `token` (a TokenRequest)."""
        result = await self._request("POST", resource.path(namespace, name, subresource), json=body)
        assert result is not None
        return result

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        self.forget(resource, namespace, name)
        try:
            await self._request("DELETE", resource.path(namespace, name), json={"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status != 404:
                raise
