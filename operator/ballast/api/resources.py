"""The custom resources Ballast serves: their names, scope, models and printer columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from ballast import GROUP, VERSION
from ballast.api.base import Rule
from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec, KillSwitchStatus
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Resource:
    """One custom resource kind."""

    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("ballast",)
    columns: tuple[PrinterColumn, ...] = field(default=())
    # Rules on the whole object; the only place CEL may read metadata.name.
    root_rules: tuple[Rule, ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
_SWITCH_COLUMNS = (
    PrinterColumn("Engaged", ".spec.engaged", "boolean", "Whether the switch is engaged."),
    PrinterColumn("Matched", ".status.matched", "integer", "ModelDeployments it holds."),
    PrinterColumn("Reason", ".spec.reason", "string", "Why.", priority=1),
    _AGE,
)

MODEL_DEPLOYMENT = Resource(
    kind="ModelDeployment",
    plural="modeldeployments",
    singular="modeldeployment",
    scope="Namespaced",
    spec_model=ModelDeploymentSpec,
    status_model=ModelDeploymentStatus,
    description="A model deployment: one workload per revision, traffic moved step by step under a contract.",
    short_names=("mdep",),
    root_rules=(
        Rule(
            "size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "metadata.name must be a DNS-1035 label of at most 52 characters: each revision runs as "
            "<name>-<revision>, which must fit a Service name",
        ),
    ),
    columns=(
        PrinterColumn("Phase", ".status.phase", "string", "Where the rollout stands."),
        PrinterColumn("Stable", ".status.stableRevision", "string", "Stable revision."),
        PrinterColumn("Canary", ".status.canaryRevision", "string", "Canary revision."),
        PrinterColumn("Weight", ".status.weights.canary", "integer", "Percent of traffic to the canary."),
        PrinterColumn("Approval", ".status.pendingApproval.step", "integer", "The step waiting for a person."),
        PrinterColumn("Killed", ".status.killSwitch.engaged", "boolean", "Whether the kill switch is engaged."),
        PrinterColumn("GPUs", ".status.capacity.requestedGPUs", "integer", "GPUs its desired replicas request."),
        PrinterColumn(
            "Capacity",
            '.status.conditions[?(@.type=="CapacityAvailable")].reason',
            "string",
            "Scheduled, or Unschedulable when pods lack a resource (the condition names it).",
        ),
        _AGE,
    ),
)


def _switch(
    kind: str, scope: Literal["Namespaced", "Cluster"], spec: type[BaseModel], short: str, what: str
) -> Resource:
    return Resource(
        kind=kind,
        plural=f"{kind.lower()}es",
        singular=kind.lower(),
        scope=scope,
        spec_model=spec,
        status_model=KillSwitchStatus,
        description=f"Engages the kill switch of the ModelDeployments it selects {what}.",
        short_names=(short,),
        columns=_SWITCH_COLUMNS,
    )


KILL_SWITCH = _switch("KillSwitch", "Namespaced", KillSwitchSpec, "ks", "in its namespace")
CLUSTER_KILL_SWITCH = _switch("ClusterKillSwitch", "Cluster", ClusterKillSwitchSpec, "cks", "across namespaces")

RESOURCES: tuple[Resource, ...] = (MODEL_DEPLOYMENT, KILL_SWITCH, CLUSTER_KILL_SWITCH)
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
