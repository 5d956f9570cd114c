"""The floor: the least a controller can do to switch routes, to measure Ballast's kill switch against.

It watches KillSwitches and ClusterKillSwitches, keeps in memory the HTTPRoutes labelled `FLOOR_LABEL`
and every namespace's labels, and on each event sends one merge patch per route whose target changed:
its `split` rule to the backend named by its `FALLBACK_ANNOTATION` while a switch selects it, else to
its `MODEL_ANNOTATION` backend. At most `IN_FLIGHT` patches at once, the limit of Ballast's switch lane.
No status, no Events, no checks, no fallbacks judged: what no controller can beat on the same stack.
A KillSwitch selects routes of its namespace by `spec.modelDeployments` (else all of them); a
ClusterKillSwitch by `spec.namespaceSelector.matchLabels` (else every namespace).

Run as its own process beside the operator: `python -m ballast.devstack.floor_controller KUBECONFIG`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ballast.kube.client import IN_FLIGHT, KubeApi
from ballast.kube.resources import CLUSTER_KILL_SWITCHES, HTTP_ROUTES, KILL_SWITCHES, Resource

FLOOR_LABEL = "floor.ballast.dev/route"
MODEL_ANNOTATION = "floor.ballast.dev/model"
FALLBACK_ANNOTATION = "floor.ballast.dev/fallback"
PORT = 8000
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
Object = dict[str, Any]
Key = tuple[str, str]


def selects(switch: Object, namespace: str, name: str, namespace_labels: dict[str, str]) -> bool:
    spec, metadata = switch.get("spec") or {}, switch["metadata"]
    if switch["kind"] == "KillSwitch":
        named = spec.get("modelDeployments")
        return bool(metadata.get("namespace") == namespace and (not named or name in named))
    wanted = (spec.get("namespaceSelector") or {}).get("matchLabels") or {}
    return all(namespace_labels.get(k) == v for k, v in wanted.items())


def split_patch(backend: str) -> Object:
    return {"spec": {"rules": [{"name": "split", "backendRefs": [{"name": backend, "port": PORT}]}]}}


class FloorController:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.gate = asyncio.Semaphore(IN_FLIGHT)
        self.switches: dict[tuple[str, str, str], Object] = {}
        self.routes: dict[Key, Object] = {}  # annotations of each floor route
        self.namespaces: dict[str, dict[str, str]] = {}
        self.written: dict[Key, str] = {}  # the backend each route was last patched to

    def target(self, key: Key) -> str:
        annotations = self.routes[key]
        labels = self.namespaces.get(key[0], {})
        engaged = any(selects(s, key[0], key[1], labels) for s in self.switches.values())
        return str(annotations[FALLBACK_ANNOTATION if engaged else MODEL_ANNOTATION])

    async def settle(self, keys: list[Key]) -> None:
        """Patch every route among `keys` whose target is not what it was last patched to, concurrently."""
        await asyncio.gather(*(self.patch(key) for key in keys if key in self.routes))

    async def patch(self, key: Key) -> None:
        backend = self.target(key)
        if self.written.get(key) == backend:
            return
        self.written[key] = backend
        async with self.gate:
            await self.api.http.patch(
                HTTP_ROUTES.path(*key),
                content=json.dumps(split_patch(backend)),
                headers={"Content-Type": "application/merge-patch+json"},
            )

    async def switch_event(self, kind: str, body: Object) -> None:
        metadata = body["metadata"]
        key = (body.get("kind", ""), metadata.get("namespace") or "", metadata["name"])
        if kind == "DELETED":
            self.switches.pop(key, None)
        else:
            self.switches[key] = body
        await self.settle(list(self.routes))

    async def route_event(self, kind: str, body: Object) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if kind == "DELETED":
            self.routes.pop(key, None)
            self.written.pop(key, None)
            return
        self.routes[key] = metadata.get("annotations") or {}
        split: Object = next((r for r in body["spec"].get("rules", []) if r.get("name") == "split"), {})
        refs: list[Object] = split.get("backendRefs", [])
        self.written[key] = refs[0]["name"] if len(refs) == 1 else ""
        await self.settle([key])

    async def namespace_event(self, kind: str, body: Object) -> None:
        name = body["metadata"]["name"]
        self.namespaces[name] = dict(body["metadata"].get("labels") or {})
        await self.settle([key for key in self.routes if key[0] == name])

    async def watch(self, resource: Resource, handle: Callable[[str, Object], Awaitable[None]], **params: str) -> None:
        """List, then watch from the list's resourceVersion; again from a fresh list when the watch ends or fails."""
        while True:
            try:
                await self._list_and_watch(resource, handle, params)
            except (httpx.HTTPError, ValueError, KeyError) as error:
                print(f"watch of {resource.plural} ended ({error!r}); listing again", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)

    async def _list_and_watch(
        self, resource: Resource, handle: Callable[[str, Object], Awaitable[None]], params: dict[str, str]
    ) -> None:
        listed = await self.api.http.get(resource.path(), params=params)
        listed.raise_for_status()
        body = listed.json()
        for item in body.get("items", []):
            await handle("ADDED", {"kind": resource.kind, **item})
        version = body["metadata"]["resourceVersion"]
        while True:  # a watch that times out goes on from the last version seen, missing nothing
            watch = {**params, "watch": "1", "resourceVersion": version, "timeoutSeconds": "240",
                     "allowWatchBookmarks": "true"}  # fmt: skip
            async with self.api.http.stream("GET", resource.path(), params=watch, timeout=None) as stream:
                stream.raise_for_status()
                async for line in stream.aiter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # 410 Gone: too old to go on from; list again
                        raise ValueError(event["object"].get("message"))
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        await handle(event["type"], event["object"])

    async def run(self) -> None:
        await asyncio.gather(
            self.watch(NAMESPACES, self.namespace_event),
            self.watch(HTTP_ROUTES, self.route_event, labelSelector=FLOOR_LABEL),
            self.watch(KILL_SWITCHES, self.switch_event),
            self.watch(CLUSTER_KILL_SWITCHES, self.switch_event),
        )


async def main(kubeconfig: str) -> None:
    api = KubeApi.from_environment(kubeconfig)
    try:
        await FloorController(api).run()
    finally:
        await api.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
