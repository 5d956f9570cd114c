"""Gateway API router: weighted backendRefs on an HTTPRoute Ballast owns, or on one rule of yours.

Owned route (`traffic.parentRefs`): Ballast writes the whole HTTPRoute (server-side apply).
Your route (`traffic.routeRef`): Ballast replaces the backendRefs of the named rule and nothing
else, with a JSON patch guarded by the route's resourceVersion.
"""

from __future__ import annotations

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.types import Condition
from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, Resource
from ballast.traffic.acceptance import route_acceptance
from ballast.traffic.router import Backends, Capabilities, Manifest
from ballast.workloads.render import DEPLOYMENT_LABEL, MANAGED_BY, owner_reference


def backend_refs(spec: ModelDeploymentSpec, backends: Backends) -> list[Manifest]:
    """Weighted refs; those at weight 0 are left out, so a switched route names only its fallback, or nothing
    when a holding switch has none left (a rule without backends: the Gateway answers with an error)."""
    refs: list[Manifest] = [
        {"name": backends.stable, "port": backends.port(backends.stable), "weight": backends.weights.stable}
    ]
    if backends.canary is not None:
        refs.append(
            {"name": backends.canary, "port": backends.port(backends.canary), "weight": backends.weights.canary}
        )
    fallback = backends.fallback
    if fallback is not None:
        ref: Manifest = {"name": fallback.name, "port": fallback.port, "weight": backends.weights.fallback}
        if fallback.namespace is not None:
            ref["namespace"] = fallback.namespace
        refs.append(ref)
    return [r for r in refs if r["weight"] > 0]


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
                "backendRefs": [{"name": backends.canary, "port": backends.port(backends.canary), "weight": 1}],
                "timeouts": _timeouts(spec),
            }
        )
    split: Manifest = {"name": "split", "backendRefs": backend_refs(spec, backends), "timeouts": _timeouts(spec)}
    if backends.mirror is not None:
        split["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": backends.mirror, "port": backends.port(backends.mirror)}},
            }
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


# What the API server fills into a backendRef left without them (the HTTPRoute CRD's defaults).
BACKEND_REF_DEFAULTS: Manifest = {"group": "", "kind": "Service", "weight": 1}


def normalised(refs: list[Manifest]) -> list[Manifest]:
    """backendRefs as the API server stores them, so what Ballast wants compares equal to what it wrote."""
    return [{**BACKEND_REF_DEFAULTS, **ref} for ref in refs]


def owned_rule_patch(route: Manifest, rule_name: str, refs: list[Manifest]) -> list[Manifest]:
    """JSON patch that replaces the backendRefs of one named rule, guarded by the resourceVersion."""
    rules = route.get("spec", {}).get("rules", [])
    index = next((i for i, rule in enumerate(rules) if rule.get("name") == rule_name), None)
    if index is None:
        raise LookupError(f"HTTPRoute {route['metadata']['name']} has no rule named {rule_name!r}")
    if normalised(rules[index].get("backendRefs") or []) == normalised(refs):
        return []
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": route["metadata"]["resourceVersion"]},
        {"op": "replace" if "backendRefs" in rules[index] else "add",
         "path": f"/spec/rules/{index}/backendRefs", "value": refs},
    ]  # fmt: skip


MIRROR_FEATURE = "HTTPRouteRequestMirror"


def supported_features(gateway_class: Manifest) -> set[str] | None:
    """The features a GatewayClass's controller reports (names, or plain strings before v1.3); None if unknown."""
    features = (gateway_class.get("status") or {}).get("supportedFeatures")
    if features is None:
        return None
    return {f["name"] if isinstance(f, dict) else str(f) for f in features}


class GatewayApiRouter:
    capabilities = Capabilities(weights=True, header_match=True, mirror=True, fallback_service=True)

    async def reconcile(
        self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, current: Manifest | None
    ) -> None:
        ref = spec.traffic.route_ref
        if ref is None:
            await api.apply(HTTP_ROUTES, build_http_route(md, spec, backends), current)
            return
        if current is None:  # the shell reads the route first and writes nothing when it is missing
            raise LookupError(f"traffic.routeRef: HTTPRoute {ref.name} does not exist")
        patch = owned_rule_patch(current, ref.rule, backend_refs(spec, backends))
        if patch:
            await api.json_patch(HTTP_ROUTES, md["metadata"]["namespace"], ref.name, patch)

    async def can_mirror(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> bool:
        """Read from each parent Gateway's class; a class that reports no features is trusted."""
        namespace = md["metadata"]["namespace"]
        parents: list[Manifest]
        if spec.traffic.route_ref is None:
            parents = [p.model_dump(by_alias=True, exclude_none=True) for p in spec.traffic.parent_refs or []]
        else:
            route = await api.get(HTTP_ROUTES, namespace, spec.traffic.route_ref.name)
            parents = list(((route or {}).get("spec") or {}).get("parentRefs") or [])
        for parent in parents:
            if parent.get("kind", "Gateway") != "Gateway":
                continue
            gateway = await api.get(GATEWAYS, parent.get("namespace") or namespace, parent["name"])
            class_name = ((gateway or {}).get("spec") or {}).get("gatewayClassName")
            gateway_class = await api.get(GATEWAY_CLASSES, None, class_name) if class_name else None
            features = supported_features(gateway_class) if gateway_class else None
            if features is not None and MIRROR_FEATURE not in features:
                return False
        return True

    def owned(self, md: Manifest) -> tuple[Resource, str]:
        return HTTP_ROUTES, md["metadata"]["name"]

    def watched_route(self, md: Manifest, spec: ModelDeploymentSpec) -> str | None:
        return spec.traffic.route_ref.name if spec.traffic.route_ref else md["metadata"]["name"]

    def acceptance(
        self, md: Manifest, spec: ModelDeploymentSpec, backends: Backends, route: Manifest | None
    ) -> Condition | None:
        ref = spec.traffic.route_ref
        if ref is not None:
            wanted = {ref.rule: backend_refs(spec, backends)}
        else:
            rules = build_http_route(md, spec, backends)["spec"]["rules"]
            wanted = {rule["name"]: rule["backendRefs"] for rule in rules}
        return route_acceptance(route, self.watched_route(md, spec) or "", wanted)

    async def finalize(self, api: KubeApi, md: Manifest, spec: ModelDeploymentSpec) -> None:
        if spec.traffic.route_ref is None:
            try:
                await api.delete(HTTP_ROUTES, md["metadata"]["namespace"], md["metadata"]["name"])
            except ApiError as error:
                if error.status != 404:
                    raise
