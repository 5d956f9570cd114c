"""What the decision core is told about the world: facts gathered by the shell, never fetched by the core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ballast.api.status import Analysis, KillSwitchSource

# A revision whose pods restarted this often is crash-looping: hard evidence, roll back.
CRASH_LOOP_RESTARTS = 3


@dataclass(frozen=True)
class RevisionObservation:
    """A revision's workload as the API server reports it."""

    exists: bool = True
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

    `promote` and `abort` carry a token (any new value acts once); `paused` is level-triggered.
    """

    promote: str | None = None
    abort: str | None = None
    paused: bool = False


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

    def of(self, revision: str | None) -> RevisionObservation:
        return self.revisions.get(revision or "", RevisionObservation(exists=False))
