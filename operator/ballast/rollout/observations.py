"""What the decision core is told about the world: facts gathered by the shell, never fetched by the core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ballast.api.status import Analysis, BurnReading, KillSwitchSource
from ballast.rollout.cost import Usage

# A revision whose pods restarted this often is crash-looping: hard evidence, roll back.
CRASH_LOOP_RESTARTS = 3


@dataclass(frozen=True)
class RevisionObservation:
    """A revision's workload as the API server reports it."""

    exists: bool = True
    workload: str = ""  # the Deployment's name
    available: bool = False
    ready_replicas: int = 0
    restarts: int = 0
    # Why the API server refuses to create this revision's pods (Pod Security, quota), as its
    # ReplicaSet reports it; "" while pods can be created. A refusal does not heal by waiting.
    refused: str = ""
    # Pods the scheduler cannot place (PodScheduled False, reason Unschedulable), and its message.
    unschedulable: int = 0
    unschedulable_reason: str = ""
    # GPUs (resources named */gpu) one pod of the revision requests.
    gpus_per_pod: int = 0

    @property
    def crash_looping(self) -> bool:
        return self.restarts >= CRASH_LOOP_RESTARTS


@dataclass(frozen=True)
class Commands:
    """Manual control through annotations; Git keeps owning the spec.

    `promote` and `abort` carry a token (any new value acts once); `paused` is level-triggered; `approved_by`
    is the user who approved (admission lets only that user write their own name).
    """

    promote: str | None = None
    abort: str | None = None
    paused: bool = False
    approved_by: str | None = None


@dataclass(frozen=True)
class FallbackObservation:
    """Whether a Service or reject fallback can take users now, and if not, why (for a person to fix)."""

    usable: bool
    problem: str = ""


@dataclass(frozen=True)
class Refusal:
    """Something Ballast will not do, and why, for a person to fix (a CamelCase reason and a sentence)."""

    reason: str
    message: str


@dataclass(frozen=True)
class GateResult:
    """A finished webhook call, bound to the point it was made for (canary revision, step)."""

    name: str
    type: str
    revision: str | None
    step: int | None
    outcome: str  # Passed, Refused or Error
    at: str  # when the call finished (RFC 3339): a result is applied once
    code: int | None = None
    latency_seconds: float | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Observations:
    revisions: Mapping[str, RevisionObservation] = field(default_factory=dict)
    commands: Commands = field(default_factory=Commands)
    # A contract check run for this reconcile (the shell runs one per rollout.interval), or None.
    analysis: Analysis | None = None
    # Engaged KillSwitches and ClusterKillSwitches that select this deployment.
    switches: tuple[KillSwitchSource, ...] = ()
    # Service and reject fallbacks by name; a previousRevision fallback is judged from `revisions`.
    fallbacks: Mapping[str, FallbackObservation] = field(default_factory=dict)
    # Whether every Gateway the route attaches to can mirror requests (HTTPRouteRequestMirror).
    mirror_supported: bool = True
    # Objects Ballast would write but did not create ("Kind name problem"): left untouched, never adopted.
    conflicts: tuple[str, ...] = ()
    # Why Ballast may not write the route now (None when it may): traffic stays exactly as it is.
    route_refused: Refusal | None = None
    # The last measurement of budget use (the shell measures once per rollout.interval), or None.
    usage: Usage | None = None
    # A burn-rate check of the stable revision (contract.afterPromotion), finished since the last decision.
    burn: BurnReading | None = None
    # The ModelDeployment's name (names the KillSwitch the watch creates).
    deployment_name: str = ""
    # Finished webhook calls not yet written to status, by webhook name.
    gate_results: Mapping[str, GateResult] = field(default_factory=dict)

    def of(self, revision: str | None) -> RevisionObservation:
        return self.revisions.get(revision or "", RevisionObservation(exists=False))
