"""KillSwitch and ClusterKillSwitch: engaging a kill switch is an object, never a spec edit."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from ballast.api.base import Rule, SpecModel, StatusModel
from ballast.api.types import Condition, DNSLabel, DNSSubdomain, LabelSelector, keyed_list

# Every namespace carries this label (set by the API server), so `Exists` on it selects them all.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Reason = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
RequestedBy = Annotated[str, StringConstraints(max_length=256)]


class KillSwitchSpec(SpecModel):
    """Engages the kill switch of the ModelDeployments it selects in its namespace."""

    __cel_rules__ = (
        Rule(
            "has(self.modelDeployments) != has(self.selector)",
            "a KillSwitch needs exactly one of modelDeployments (names) or selector (labels)",
        ),
    )

    model_deployments: list[DNSSubdomain] | None = Field(
        default=None, min_length=1, max_length=256, description="Names of ModelDeployments in this namespace."
    )
    selector: LabelSelector | None = Field(default=None, description="Labels of ModelDeployments in this namespace.")
    reason: Reason = Field(description="Why users must not get model answers; shown in status and Events.")
    requested_by: RequestedBy | None = Field(default=None, description="Who asked for it (a person or a system).")
    engaged: bool = Field(default=True, description="false keeps the object but releases the switch.")


class ClusterKillSwitchSpec(SpecModel):
    """Engages the kill switch across namespaces, for platform teams and incidents."""

    __cel_rules__ = (
        Rule(
            "(has(self.namespaces) ? 1 : 0) + (has(self.namespaceSelector) ? 1 : 0)"
            " + (self.allNamespaces ? 1 : 0) == 1",
            "a ClusterKillSwitch needs exactly one of namespaces, namespaceSelector, or allNamespaces: true",
        ),
        Rule(
            "!has(self.namespaceSelector) || "
            "(has(self.namespaceSelector.matchLabels) && size(self.namespaceSelector.matchLabels) > 0) || "
            "(has(self.namespaceSelector.matchExpressions) && self.namespaceSelector.matchExpressions.exists(e, "
            f"e.operator == 'In' || (e.operator == 'Exists' && e.key != '{NAMESPACE_NAME_LABEL}')))",
            "namespaceSelector must name what it selects (a matchLabels entry, an In term, or Exists on a key "
            f"other than {NAMESPACE_NAME_LABEL}): made only of NotIn, DoesNotExist or Exists on "
            f"{NAMESPACE_NAME_LABEL} it selects every namespace; say allNamespaces: true for that",
            field_path=".namespaceSelector",
        ),
    )

    namespaces: list[DNSLabel] | None = Field(
        default=None, min_length=1, max_length=256, description="Namespaces by name."
    )
    namespace_selector: LabelSelector | None = Field(default=None, description="Namespaces by label.")
    all_namespaces: bool = Field(
        default=False, description="Every namespace; must be said explicitly, an empty selector never means it."
    )
    selector: LabelSelector | None = Field(
        default=None, description="ModelDeployments by label (default: all in the selected namespaces)."
    )
    reason: Reason = Field(description="Why users must not get model answers; shown in status and Events.")
    requested_by: RequestedBy | None = Field(default=None, description="Who asked for it (a person or a system).")
    engaged: bool = Field(default=True, description="false keeps the object but releases the switch.")


class SwitchedDeployment(StatusModel):
    """A ModelDeployment the switch holds."""

    namespace: str = Field(description="Namespace of the ModelDeployment.")
    name: str = Field(description="Name of the ModelDeployment.")
    fallback: str | None = Field(default=None, description="The fallback serving its users.")
    since: str | None = Field(default=None, description="When it was switched (RFC 3339).")
    accepted: bool = Field(
        default=False,
        description="Whether the Gateway accepted the route that carries its fallback (the HTTPRoute's status.parents: "
        "Accepted and ResolvedRefs).",
    )
    problem: str | None = Field(default=None, description="Why it is not switched, or holds without a usable fallback.")


class KillSwitchStatus(StatusModel):
    """What the switch holds now."""

    observed_generation: int | None = Field(default=None, description="The generation last acted on.")
    engaged_at: str | None = Field(default=None, description="When the switch was first engaged (RFC 3339).")
    matched: int = Field(default=0, description="How many ModelDeployments it selects.")
    deployments: list[SwitchedDeployment] = Field(
        default_factory=list, description="The selected ModelDeployments (first 500)."
    )
    conditions: list[Condition] = keyed_list(
        description="Engaged, and problems such as a deployment with no usable fallback.", key="type"
    )
