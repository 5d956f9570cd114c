"""Gateway API router: weighted backendRefs on an HTTPRoute Ballast owns, or on one rule of yours.

Owned route (`traffic.parentRefs`): Ballast writes the whole HTTPRoute (server-side apply).
Your route (`traffic.routeRef`): Ballast replaces the backendRefs of the named rule and nothing
else, with a JSON patch guarded by the route's resourceVersion.
"""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.kubeapi import HTTP_ROUTES, ApiError, KubeApi
from ballast.traffic.router import Backends, Capabilities, Manifest
from ballast.workloads.render import DEPLOYMENT_LABEL, MANAGED_BY, owner_reference


def backend_refs(spec: ModelDeploymentSpec, backends: Backends) -> list[Manifest]:
    refs = [{"name": backends.stable, "port": spec.traffic.port, "weight": backends.weights.stable}]
    if backends.canary is not None:
        refs.append({"name": backends.canary, "port": spec.traffic.port, "weight": backends.weights.canary})
    return refs


def _timeouts(spec: ModelDeploymentSpec) -> Manifest:
    return {"request": spec.traffic.timeouts.request, "backendRequest": spec.traffic.timeouts.backend_request}


def build_http_route(md: Manifest, spec: ModelDeploymentSpec, backends: Backends) -> Manifest:
    """The HTTPRoute Ballast owns: an optional header-matched A/B rule, then the weighted split."""
    traffic = spec.traffic
    rules: list[Manifest] = []
    if traffic.canary_match and backends.canary is not None:
        rules.append(
            {
                "name": "canary-match",
                "matches": [
                    {"headers": [{"type": h.type, "name": h.name, "value": h.value} for h in traffic.canary_match]}
                ],
                "backendRefs": [{"name": backends.canary, "port": traffic.port, "weight": 1}],
                "timeouts": _timeouts(spec),
            }
        )
    split: Manifest = {"name": "split", "backendRefs": backend_refs(spec, backends), "timeouts": _timeouts(spec)}
    if backends.mirror is not None:
        split["filters"] = [
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": backends.mirror, "port": traffic.port}}}
        ]
    rules.append(split)
    route: Manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": md["metadata"]["name"],
            "namespace": md["metadata"]["namespace"],
            "labels": {**MANAGED_BY, DEPLOYMENT_LABEL: md["metadata"]["name"]},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "parentRefs": [p.model_dump(by_alias=True, exclude_none=True) for p in traffic.parent_refs or []],
            "rules": rules,
        },
    }
    if traffic.hostnames:
        route["spec"]["hostnames"] = list(traffic.hostnames)
    return route


def owned_rule_patch(route: Manifest, rule_name: str, refs: list[Manifest]) -> list[Manifest]:
    """JSON patch that replaces the backendRefs of one named rule, guarded by the resourceVersion."""
    rules = route.get("spec", {}).get("rules", [])
    index = next((i for i, rule in enumerate(rules) if rule.get("name") == rule_name), None)
    if index is None:
        raise LookupError(f"HTTPRoute {route['metadata']['name']} has no rule named {rule_name!r}")
    if rules[index].get("backendRefs") == refs:
        return []
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": route["metadata"]["resourceVersion"]},
        {"op": "replace" if "backendRefs" in rules[index] else "add",
         "path": f"/spec/rules/{index}/backendRefs", "value": refs},
    ]  # fmt: skip


def _weights_of(refs: list[Manifest]) -> dict[str, int]:
    return {ref["name"]: int(ref.get("weight", 1)) for ref in refs}


class GatewayApiRouter:
    capabilities = Capabilities(weights=True, header_match=True, mirror=True, fallback_service=True)

    async def reconcile(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, backends: Backends) -> None:
        ref = spec.traffic.route_ref
        if ref is None:
            await api.apply(HTTP_ROUTES, build_http_route(md, spec, backends))
            return
        route = await api.get(HTTP_ROUTES, md["metadata"]["namespace"], ref.name)
        if route is None:
            raise LookupError(f"traffic.routeRef: HTTPRoute {ref.name} does not exist")
        patch = owned_rule_patch(route, ref.rule, backend_refs(spec, backends))
        if patch:
            await api.json_patch(HTTP_ROUTES, md["metadata"]["namespace"], ref.name, patch)

    async def read_weights(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> dict[str, int] | None:
        ref = spec.traffic.route_ref
        route = await api.get(HTTP_ROUTES, md["metadata"]["namespace"], ref.name if ref else md["metadata"]["name"])
        if route is None:
            return None
        wanted = ref.rule if ref else "split"
        rules: list[dict[str, Any]] = route.get("spec", {}).get("rules", [])
        rule = next((r for r in rules if r.get("name") == wanted), None)
        return _weights_of(rule.get("backendRefs", [])) if rule else None

    async def finalize(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> None:
        if spec.traffic.route_ref is None:
            try:
                await api.delete(HTTP_ROUTES, md["metadata"]["namespace"], md["metadata"]["name"])
            except ApiError as error:
                if error.status != 404:
                    raise
