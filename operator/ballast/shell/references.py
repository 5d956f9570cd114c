"""References admission cannot judge, since it sees one object at a time: judged here, from memory.

- `traffic.routeRef`: Ballast takes a rule of your HTTPRoute only when the route opts in, with the
  annotation `ballast.dev/model-deployments` naming this ModelDeployment; when several opted-in
  deployments claim the same rule, the oldest holds it and the others are refused.
- A Service fallback must be independent of the model: a Service that is a Ballast revision or
  reject responder (this deployment's or another's) is not usable, nor is one that leads back to
  this deployment through other deployments' fallbacks (a cycle: a kill switch on all of them would
  send each one's users to another's model).

Each problem is reported by a condition and leaves traffic as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ballast.api.modeldeployment import RouteRef
from ballast.api.revision import REVISION_LENGTH
from ballast.rollout.observations import Refusal
from ballast.shell.cluster_view import IndexView
from ballast.shell.ownership import Owner, controller_of
from ballast.workloads.render import DEPLOYMENT_LABEL, REVISION_LABEL
from ballast.workloads.responder_manifests import RESPONDER_LABEL

OPT_IN_ANNOTATION = "ballast.dev/model-deployments"
Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class ServiceFacts:
    """What the reconcile needs to know of any Service: its ports, who controls it, where it sends traffic."""

    ports: tuple[int, ...]
    controller: Owner | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # Ballast's labels only
    selector: Mapping[str, str] = field(default_factory=dict)  # Ballast's labels only


def service_facts(body: Mapping[str, Any]) -> ServiceFacts:
    metadata, spec = body["metadata"], body.get("spec") or {}
    ours = (DEPLOYMENT_LABEL, REVISION_LABEL, RESPONDER_LABEL)
    labels, selector = metadata.get("labels") or {}, spec.get("selector") or {}
    return ServiceFacts(
        ports=tuple(int(p["port"]) for p in spec.get("ports") or [] if "port" in p),
        controller=controller_of(metadata),
        labels={k: str(v) for k, v in labels.items() if k in ours},
        selector={k: str(v) for k, v in selector.items() if k in ours},
    )


@dataclass(frozen=True)
class DeploymentRefs:
    """The references of one ModelDeployment to objects it does not own."""

    namespace: str
    name: str
    created: str
    route_ref: tuple[str, str] | None = None  # HTTPRoute name, rule name
    fallback_services: tuple[Key, ...] = ()


def deployment_refs(body: Mapping[str, Any]) -> DeploymentRefs:
    """Read leniently from the raw spec: admission has validated it, and an invalid one only loses references."""
    metadata, spec = body["metadata"], body.get("spec") or {}
    ref = (spec.get("traffic") or {}).get("routeRef") or {}
    namespace = metadata["namespace"]
    services = tuple(
        (f["service"].get("namespace") or namespace, f["service"]["name"])
        for f in spec.get("fallbacks") or []
        if isinstance(f, dict) and isinstance(f.get("service"), dict) and f["service"].get("name")
    )
    return DeploymentRefs(
        namespace=namespace,
        name=metadata["name"],
        created=str(metadata.get("creationTimestamp") or ""),
        route_ref=(ref["name"], ref["rule"]) if ref.get("name") and ref.get("rule") else None,
        fallback_services=services,
    )


def _derives(refs: DeploymentRefs, name: str) -> bool:
    """Whether `name` is one a deployment gives its objects: its own (route), `-reject`, or `-<revision>`."""
    suffix = name.removeprefix(f"{refs.name}-")
    revision = len(suffix) == REVISION_LENGTH and all(c in "0123456789abcdef" for c in suffix)
    return name == refs.name or (suffix != name and (suffix == "reject" or revision))


def _first(index: IndexView, key: Any) -> Any:
    return next(iter(index[key]), None) if key in index else None


class ReferenceView:
    """Every Service's facts and every ModelDeployment's references, from kopf's indexes."""

    def __init__(self, services: IndexView, deployments: IndexView) -> None:
        self._services = services  # (namespace, name) -> ServiceFacts
        self._deployments = deployments  # namespace -> DeploymentRefs

    def service(self, namespace: str, name: str) -> ServiceFacts | None:
        facts: ServiceFacts | None = _first(self._services, (namespace, name))
        return facts

    def deployments_in(self, namespace: str) -> list[DeploymentRefs]:
        return list(self._deployments[namespace]) if namespace in self._deployments else []

    def deployment(self, namespace: str, name: str) -> DeploymentRefs | None:
        return next((d for d in self.deployments_in(namespace) if d.name == name), None)

    def all_deployments(self) -> list[DeploymentRefs]:
        return [d for namespace in list(self._deployments) for d in self.deployments_in(namespace)]

    def claiming(self, namespace: str, route: str) -> list[DeploymentRefs]:
        """The deployments whose routeRef names this route, or whose own objects could take its name."""
        return [d for d in self.deployments_in(namespace) if (d.route_ref or ("",))[0] == route or _derives(d, route)]

    def deriving(self, namespace: str, name: str) -> list[DeploymentRefs]:
        """The deployments one of whose objects could take this name (a conflict may have come or gone)."""
        return [d for d in self.deployments_in(namespace) if _derives(d, name)]

    def falling_back_to(self, namespace: str, name: str) -> list[DeploymentRefs]:
        """The deployments with a fallback Service that leads to this deployment (their cycles may change)."""
        found = []
        for refs in self.all_deployments():
            for service in refs.fallback_services:
                facts = self.service(*service)
                if facts is not None and service[0] == namespace and leads_to(facts) == name:
                    found.append(refs)
                    break
        return found


# ------------------------------------------------------------------------------------ routeRef


def opted_in(route: Mapping[str, Any]) -> set[str]:
    """The ModelDeployments a route lets take its rules (comma or space separated names)."""
    annotations = (route.get("metadata") or {}).get("annotations") or {}
    text = str(annotations.get(OPT_IN_ANNOTATION, ""))
    return {name for name in text.replace(",", " ").split() if name}


def route_ref_refusal(
    view: ReferenceView, md: Mapping[str, Any], ref: RouteRef, route: Mapping[str, Any] | None
) -> Refusal | None:
    """Why this ModelDeployment may not write the rule its routeRef names (None when it may)."""
    metadata = md["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    where = f"traffic.routeRef: HTTPRoute {namespace}/{ref.name}"
    if route is None:
        return Refusal("RouteNotFound", f"{where} does not exist")
    rules = (route.get("spec") or {}).get("rules") or []
    if not any(r.get("name") == ref.rule for r in rules):
        return Refusal("RuleNotFound", f"{where} has no rule named {ref.rule!r}")
    allowed = opted_in(route)
    if name not in allowed:
        return Refusal(
            "NotOptedIn",
            f"{where} does not opt in to this ModelDeployment: the route's owner adds the annotation "
            f"{OPT_IN_ANNOTATION}: {name}",
        )
    claimants = [d for d in view.deployments_in(namespace) if d.route_ref == (ref.name, ref.rule) and d.name in allowed]
    holder = min(claimants, key=lambda d: (d.created, d.name), default=None)
    if holder is not None and holder.name != name:
        return Refusal(
            "RuleClaimed",
            f"{where}: rule {ref.rule!r} is held by ModelDeployment {holder.name}, which claimed it first; "
            "a rule has one owner",
        )
    return None


# ------------------------------------------------------------------------------------ fallbacks


def ballast_role(facts: ServiceFacts) -> str:
    """What part of a Ballast deployment a Service is or selects ('' for a Service of its own)."""
    for source in (facts.labels, facts.selector):
        deployment = source.get(DEPLOYMENT_LABEL) or source.get(RESPONDER_LABEL) or "?"
        if REVISION_LABEL in source:
            return f"revision {source[REVISION_LABEL]} of ModelDeployment {deployment}"
        if RESPONDER_LABEL in source:
            return f"the reject responder of ModelDeployment {source[RESPONDER_LABEL]}"
    return ""


def leads_to(facts: ServiceFacts) -> str | None:
    """The ModelDeployment (of the Service's namespace) whose model serves what this Service receives, if any."""
    return facts.labels.get(DEPLOYMENT_LABEL) or facts.selector.get(DEPLOYMENT_LABEL)


def fallback_cycle(view: ReferenceView, start: Key, service: Key) -> list[Key] | None:
    """The deployments a fallback Service of `start` leads through back to `start`, or None when it does not."""

    def next_deployments(services: Iterable[Key]) -> list[Key]:
        found = []
        for namespace, name in services:
            facts = view.service(namespace, name)
            target = leads_to(facts) if facts is not None else None
            if target is not None:
                found.append((namespace, target))
        return found

    paths: list[list[Key]] = [[start, target] for target in next_deployments([service])]
    seen: set[Key] = set()
    while paths:
        path = paths.pop()
        here = path[-1]
        if here == start:
            return path
        if here in seen:
            continue
        seen.add(here)
        refs = view.deployment(*here)
        if refs is not None:
            paths.extend([*path, after] for after in next_deployments(refs.fallback_services))
    return None


def fallback_service_problem(view: ReferenceView, md: Mapping[str, Any], namespace: str, name: str) -> str:
    """Why a Service cannot be a fallback of this ModelDeployment for what it is ('' when it can)."""
    facts = view.service(namespace, name)
    if facts is None:
        return ""  # not found: the caller says so
    role = ballast_role(facts)
    if role:
        return (
            f"Service {namespace}/{name} is {role}: a fallback must not depend on a Ballast model "
            f"(use previousRevision or reject for this deployment's own)"
        )
    start = (md["metadata"]["namespace"], md["metadata"]["name"])
    cycle = fallback_cycle(view, start, (namespace, name))
    if cycle is not None:
        hops = " -> ".join(f"{ns}/{n}" for ns, n in cycle)
        return (
            f"Service {namespace}/{name} leads back to this ModelDeployment ({hops}): a fallback cycle, where a "
            "kill switch on all of them would send each one's users to another's model"
        )
    return ""
