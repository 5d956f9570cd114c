"""An in-memory Kubernetes API behind httpx.MockTransport, and the kopf indexes the operator would keep of it.

Just enough of the API for one reconcile: GET, POST, DELETE, server-side apply (merging metadata,
replacing spec), JSON patch (test/add/replace) and status merge patches; every request is recorded,
so a test can say which writes a reconcile made. No sockets, no threads.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import kopf

from ballast.handlers import indexes
from ballast.kube.client import KubeApi
from ballast.shell.children import Children
from ballast.shell.cluster_view import ClusterView, deployment_entry, route_summary
from ballast.shell.references import ReferenceView, deployment_refs, service_facts
from ballast.workloads.render import DEPLOYMENT_LABEL

Manifest = dict[str, Any]
Key = tuple[str, str, str]  # plural, namespace, name


def _parse(path: str) -> tuple[str, str, str | None, str | None]:
    """(plural, namespace, name, subresource) of an API path."""
    parts = path.strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    assert parts[0] == "namespaces", path
    namespace, plural = parts[1], parts[2]
    name = parts[3] if len(parts) > 3 else None
    subresource = parts[4] if len(parts) > 4 else None
    return plural, namespace, name, subresource


def _merge(into: Manifest, patch: Manifest) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _json_patch(body: Manifest, operations: list[Manifest]) -> bool:
    """Apply a JSON patch; False when a `test` fails."""
    for op in operations:
        keys = [int(k) if k.isdigit() else k for k in op["path"].strip("/").split("/")]
        parent: Any = body
        for key in keys[:-1]:
            parent = parent[key]
        if op["op"] == "test":
            if parent[keys[-1]] != op["value"]:
                return False
        else:
            parent[keys[-1]] = copy.deepcopy(op["value"])
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, Manifest] = {}
        self.requests: list[tuple[str, str]] = []
        self.version = 0
        # Objects someone else creates right after the operator first reads that they are absent (a race).
        self.created_after_read: dict[Key, Manifest] = {}

    # ------------------------------------------------------------------------------ the API

    def api(self) -> KubeApi:
        transport = httpx.MockTransport(self._answer)
        return KubeApi(httpx.AsyncClient(base_url="https://fake", transport=transport))

    @staticmethod
    def _default(plural: str, body: Manifest) -> None:
        """What the real API server fills in that matters to a comparison: an HTTPRoute's backendRef group and kind."""
        if plural == "httproutes":
            for rule in (body.get("spec") or {}).get("rules") or []:
                rule["backendRefs"] = [{"group": "", "kind": "Service", **r} for r in rule.get("backendRefs") or []]

    def _stamp(self, body: Manifest, *, spec_changed: bool) -> None:
        self.version += 1
        metadata = body["metadata"]
        metadata["resourceVersion"] = str(self.version)
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", f"2026-11-24T12:{self.version // 60:02d}:{self.version % 60:02d}Z")
        if spec_changed:
            metadata["generation"] = int(metadata.get("generation", 0)) + 1

    def _answer(self, request: httpx.Request) -> httpx.Response:
        plural, namespace, name, subresource = _parse(request.url.path)
        self.requests.append((request.method, f"{plural}/{name}" + (f"/{subresource}" if subresource else "")))
        key = (plural, namespace, name or "")
        found = self.objects.get(key)
        if request.method == "GET":
            if found is None and key in self.created_after_read:
                self.put(plural, self.created_after_read.pop(key))
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={"message": "not found"})
        if request.method == "DELETE":
            self.objects.pop(key, None)
            return httpx.Response(200 if found else 404, json={"message": "deleted"})
        body = json.loads(request.content)
        if request.method == "POST":
            created = copy.deepcopy(body)
            created["metadata"].setdefault("name", f"{created['metadata'].get('generateName', 'x')}{self.version}")
            self._stamp(created, spec_changed=True)
            self.objects[(plural, namespace, created["metadata"]["name"])] = created
            return httpx.Response(201, json=created)
        content_type = request.headers["Content-Type"]
        if content_type == "application/apply-patch+yaml":
            precondition = body["metadata"].pop("resourceVersion", None)
            if found is not None and precondition not in (None, found["metadata"]["resourceVersion"]):
                return httpx.Response(409, json={"message": "the object has been modified"})
            current = copy.deepcopy(found) if found else {"metadata": {}}
            _merge(current["metadata"], body["metadata"])
            spec_changed = False
            for field, value in body.items():
                if field not in ("metadata", "status"):
                    spec_changed |= current.get(field) != value
                    current[field] = copy.deepcopy(value)
            self._default(plural, current)
            self._stamp(current, spec_changed=spec_changed or found is None)
            self.objects[key] = current
            return httpx.Response(200, json=current)
        if found is None:
            return httpx.Response(404, json={"message": "not found"})
        if content_type == "application/json-patch+json":
            patched = copy.deepcopy(found)
            if not _json_patch(patched, body):
                return httpx.Response(422, json={"message": "test failed"})
            self._default(plural, patched)
            self._stamp(patched, spec_changed=True)
            self.objects[key] = patched
            return httpx.Response(200, json=patched)
        assert subresource == "status", request.url.path
        if body["metadata"]["resourceVersion"] != found["metadata"]["resourceVersion"]:
            return httpx.Response(409, json={"message": "conflict"})
        _merge(found.setdefault("status", {}), body["status"])
        self._stamp(found, spec_changed=False)
        return httpx.Response(200, json=found)

    # --------------------------------------------------------------------------- test helpers

    def put(self, plural: str, body: Manifest) -> Manifest:
        """Create an object as another client would (kubectl, a user, another controller)."""
        stored = copy.deepcopy(body)
        self._default(plural, stored)
        self._stamp(stored, spec_changed=True)
        self.objects[(plural, stored["metadata"]["namespace"], stored["metadata"]["name"])] = stored
        return stored

    def get(self, plural: str, namespace: str, name: str) -> Manifest | None:
        return self.objects.get((plural, namespace, name))

    def of(self, plural: str) -> Iterable[Manifest]:
        return [body for (kind, _, _), body in self.objects.items() if kind == plural]

    def writes(self) -> list[tuple[str, str]]:
        """The requests that change something, other than Events and the ModelDeployment's status."""
        return [
            (method, path)
            for method, path in self.requests
            if method != "GET" and not path.startswith("events/") and not path.endswith("/status")
        ]

    # ------------------------------------------------------------------ the operator's indexes

    def _children(self, plural: str, trim: Any) -> dict[Any, list[Any]]:
        found: dict[Any, list[Any]] = {}
        for body in self.of(plural):
            labels = body["metadata"].get("labels") or {}
            if DEPLOYMENT_LABEL in labels:
                key = (body["metadata"]["namespace"], labels[DEPLOYMENT_LABEL])
                found.setdefault(key, []).append(trim(kopf.Body(body)))
        return found

    def children(self) -> Children:
        trimmed = indexes._trimmed  # what the operator keeps of a child, exactly
        return Children(
            self._children("deployments", lambda b: trimmed(b, status=True)),
            self._children("pods", lambda b: trimmed(b, status=True)),
            self._children("controllerrevisions", lambda b: {**trimmed(b), "data": copy.deepcopy(b.get("data"))}),
            self._children("services", trimmed),
            self._children("httproutes", trimmed),
            self._children("horizontalpodautoscalers", trimmed),
            self._children("poddisruptionbudgets", trimmed),
        )

    def _by_namespace(self, plural: str, value: Any) -> dict[Any, list[Any]]:
        found: dict[Any, list[Any]] = {}
        for body in self.of(plural):
            found.setdefault(body["metadata"]["namespace"], []).append(value(body))
        return found

    def services(self) -> dict[Any, list[Any]]:
        return {(b["metadata"]["namespace"], b["metadata"]["name"]): [service_facts(b)] for b in self.of("services")}

    def cluster_view(self) -> ClusterView:
        deployments = self._by_namespace("modeldeployments", deployment_entry)
        routes = {
            (body["metadata"]["namespace"], body["metadata"]["name"]): [route_summary(body)]
            for body in self.of("httproutes")
        }
        return ClusterView({}, {}, {}, {}, deployments, self.services(), routes)

    def references(self) -> ReferenceView:
        return ReferenceView(self.services(), self._by_namespace("modeldeployments", deployment_refs))
