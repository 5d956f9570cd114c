"""Which kill switches select which ModelDeployments: label selectors and scopes, as pure functions.

The shell feeds these from in-memory indexes of switches, namespaces and ModelDeployments, so a
switch acts on the watch event that created it, with no API call to find its targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec
from ballast.api.status import KillSwitchSource
from ballast.api.types import LabelSelector

Labels = Mapping[str, str]


def selector_matches(selector: LabelSelector, labels: Labels) -> bool:
    """Kubernetes label-selector semantics: every matchLabels pair and every expression must hold."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        if requirement.operator == "In" and value not in requirement.values:
            return False
        if requirement.operator == "NotIn" and present and value in requirement.values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Switch:
    """A KillSwitch or ClusterKillSwitch as the index holds it."""

    kind: Literal["KillSwitch", "ClusterKillSwitch"]
    name: str
    namespace: str | None
    spec: KillSwitchSpec | ClusterKillSwitchSpec
    creator: str | None = None  # the field manager that created it, when requestedBy is not set

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace or "", self.name)

    def selects(self, namespace: str, name: str, labels: Labels, namespace_labels: Labels) -> bool:
        """Whether this switch, engaged or not, selects the ModelDeployment `namespace/name`."""
        spec = self.spec
        if isinstance(spec, KillSwitchSpec):
            if namespace != self.namespace:
                return False
            if spec.model_deployments is not None:
                return name in spec.model_deployments
            return spec.selector is not None and selector_matches(spec.selector, labels)
        in_scope = (
            spec.all_namespaces
            or (spec.namespaces is not None and namespace in spec.namespaces)
            or (spec.namespace_selector is not None and selector_matches(spec.namespace_selector, namespace_labels))
        )
        return in_scope and (spec.selector is None or selector_matches(spec.selector, labels))

    def source(self) -> KillSwitchSource:
        return KillSwitchSource(
            kind=self.kind,
            name=self.name,
            namespace=self.namespace,
            reason=self.spec.reason,
            requested_by=self.spec.requested_by or self.creator,
        )


@dataclass(frozen=True)
class DeploymentEntry:
    """What a switch needs to know of a ModelDeployment: who it is and how its kill switch stands."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    engaged: bool = False
    fallback: str | None = None
    since: str | None = None
    refused: str | None = None  # why a requested switch could not be honoured
    accepted: bool = False  # the Gateway accepted the route as the deployment's status asks (GatewayAccepted)
    not_accepted: str | None = None  # what the Gateway said instead, or that it has not reported yet
    holding: str | None = None  # engaged with no usable fallback: where users are held, and why


def engaged_sources(
    switches: Iterable[Switch], namespace: str, name: str, labels: Labels, namespace_labels: Labels
) -> tuple[KillSwitchSource, ...]:
    """The engaged switches selecting one ModelDeployment, in a stable order (kind, namespace, name)."""
    selecting = [s for s in switches if s.spec.engaged and s.selects(namespace, name, labels, namespace_labels)]
    return tuple(s.source() for s in sorted(selecting, key=lambda s: s.key))
