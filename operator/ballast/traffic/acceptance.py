"""What the Gateway accepted: an HTTPRoute's `status.parents` read against the backends Ballast wants.

Writing a route is not serving it. A Gateway reports, per parent, whether it accepted the route
(`Accepted`) and could resolve every backend (`ResolvedRefs`), for a given `metadata.generation`.
The `GatewayAccepted` condition is True only when the route carries the backends the status asks
for and every parent Gateway reported both conditions True for that generation. It is distinct from
`RouteAccepted` (`rollout/refusals.py`), which says whether the route is Ballast's to write at all:
while that is False Ballast writes nothing, and GatewayAccepted is Unknown (`NotWritten`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ballast.api.types import Condition

Manifest = dict[str, Any]
ROUTE_CONDITIONS = ("Accepted", "ResolvedRefs")
CONDITION = "GatewayAccepted"


def _ref_key(ref: Mapping[str, Any], namespace: str) -> tuple[str, str, int, int]:
    """A backendRef as the API server stores it (group, kind and weight defaulted) reduced to what routes."""
    return (ref.get("namespace") or namespace, ref["name"], int(ref.get("port") or 0), int(ref.get("weight", 1)))


def _parent_key(parent: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    return (parent.get("namespace") or namespace, parent["name"], parent.get("sectionName") or "")


def carries(route: Manifest, wanted: Mapping[str, list[Manifest]]) -> bool:
    """Whether each named rule of the route has exactly the wanted backendRefs (order aside)."""
    namespace = route["metadata"]["namespace"]
    rules = {rule.get("name"): rule for rule in (route.get("spec") or {}).get("rules") or []}
    for name, refs in wanted.items():
        rule = rules.get(name)
        if rule is None:
            return False
        observed = sorted(_ref_key(r, namespace) for r in rule.get("backendRefs") or [])
        if observed != sorted(_ref_key(r, namespace) for r in refs):
            return False
    return set(rules) >= set(wanted)


def _accepted(holds: Literal["True", "False", "Unknown"], reason: str, message: str) -> Condition:
    return Condition(type=CONDITION, status=holds, reason=reason, message=message)


def not_written(name: str) -> Condition:
    """GatewayAccepted while Ballast may not write the route (RouteAccepted False): nothing of Ballast's to accept."""
    return _accepted(
        "Unknown", "NotWritten", f"Ballast writes nothing to HTTPRoute {name} while RouteAccepted is False"
    )


def route_acceptance(route: Manifest | None, name: str, wanted: Mapping[str, list[Manifest]]) -> Condition:
    """The GatewayAccepted condition of the route `name` (None: not observed) for the rules Ballast owns."""
    if route is None:
        return _accepted("Unknown", "RouteMissing", f"HTTPRoute {name} is not there yet")
    if not carries(route, wanted):
        return _accepted("Unknown", "Pending", f"HTTPRoute {name} does not carry the wanted backends yet")
    metadata = route["metadata"]
    namespace, generation = metadata["namespace"], int(metadata.get("generation") or 0)
    reports = {
        _parent_key(p.get("parentRef") or {"name": ""}, namespace): p
        for p in (route.get("status") or {}).get("parents") or []
    }
    parents = (route.get("spec") or {}).get("parentRefs") or []
    if not parents:
        return _accepted("False", "NoParentRefs", f"HTTPRoute {name} names no parent Gateway, so none serves it")
    gateways: list[str] = []
    for parent in parents:
        key = _parent_key(parent, namespace)
        gateway = f"{key[0]}/{key[1]}" + (f" ({key[2]})" if key[2] else "")
        gateways.append(gateway)
        conditions = {c.get("type"): c for c in (reports.get(key) or {}).get("conditions") or []}
        for kind in ROUTE_CONDITIONS:
            found = conditions.get(kind)
            if found is None or int(found.get("observedGeneration") or 0) < generation:
                return _accepted(
                    "Unknown", "Pending",
                    f"Gateway {gateway} has not reported {kind} for generation {generation} of HTTPRoute {name} yet",
                )  # fmt: skip
            if found.get("status") != "True":
                return _accepted(
                    "False", str(found.get("reason") or f"Not{kind}"),
                    f"Gateway {gateway}: {kind} is {found.get('status')} ({found.get('reason')}): "
                    f"{found.get('message', '')}".strip(),
                )  # fmt: skip
    where = ", ".join(gateways)
    return _accepted("True", "Accepted", f"Gateway {where} accepted generation {generation} of HTTPRoute {name}, "
                     "every backend resolved")  # fmt: skip


def parents_digest(route: Mapping[str, Any] | None) -> str:
    """What of a route's status changes acceptance: each parent's conditions (type, status, generation)."""
    parents = ((route or {}).get("status") or {}).get("parents") or []
    return repr(
        sorted(
            (
                repr(sorted((p.get("parentRef") or {}).items())),
                tuple(
                    sorted(
                        (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
                        for c in p.get("conditions") or []
                    )
                ),
            )
            for p in parents
        )
    )
