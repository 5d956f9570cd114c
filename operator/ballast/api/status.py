"""ModelDeployment status: everything a person needs to reconstruct what the operator did and why."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ballast.api.base import StatusModel
from ballast.api.types import Condition, keyed_list

Phase = Literal["Pending", "Progressing", "Paused", "Promoting", "Stable", "RolledBack", "Failed"]
Verdict = Literal["Passed", "Failed", "Inconclusive", "Error"]
RevisionRole = Literal["stable", "canary", "previous", "retired"]

HISTORY_LIMIT = 50


class RevisionStatus(StatusModel):
    """One revision and its workload."""

    name: str = Field(max_length=63, description="The revision id: a hash of the pod template as written.")
    role: RevisionRole = Field(description="stable, canary, previous (kept warm) or retired.")
    workload: str = Field(default="", max_length=253, description="Name of the Deployment and Service.")
    replicas: int = Field(default=0, description="Desired replicas.")
    ready_replicas: int = Field(default=0, description="Ready replicas.")
    unschedulable: int = Field(
        default=0, description="Pods the scheduler cannot place (PodScheduled False, reason Unschedulable)."
    )
    requested_gpus: int = Field(
        default=0, alias="requestedGPUs", description="GPUs (resources named */gpu) its desired replicas request."
    )
    replica_hours: float = Field(default=0.0, description="Ready replica-hours spent so far (what serving costs).")
    created_at: str | None = Field(default=None, description="When the revision first appeared (RFC 3339).")
    retire_at: str | None = Field(default=None, description="When a previous revision scales down (RFC 3339).")


class ScalingStatus(StatusModel):
    """A canary scaled up for its next step: the weight moves only once its ready replicas can carry it."""

    weight: int = Field(description="The canary weight the replicas are being added for.")
    replicas: int = Field(description="Ready canary replicas that weight needs.")
    since: str = Field(description="When the scale-up began (RFC 3339); rollout.progressDeadline applies.")


class CapacityStatus(StatusModel):
    """What the deployment's revisions hold and have spent, over all revisions."""

    replicas: int = Field(default=0, description="Desired replicas over all revisions.")
    ready_replicas: int = Field(default=0, description="Ready replicas over all revisions.")
    unschedulable: int = Field(default=0, description="Pods the scheduler cannot place.")
    requested_gpus: int = Field(default=0, alias="requestedGPUs", description="GPUs the desired replicas request.")
    replica_hours: float = Field(default=0.0, description="Ready replica-hours spent so far.")
    gpu_hours: float = Field(default=0.0, alias="gpuHours", description="GPU-hours of ready replicas spent so far.")
    accounted_at: str | None = Field(default=None, description="Until when the hours are counted (RFC 3339).")


class Weights(StatusModel):
    """The traffic split in force, percent of requests."""

    stable: int = Field(default=100, description="Percent to the stable revision.")
    canary: int = Field(default=0, description="Percent to the canary revision.")
    fallback: int = Field(default=0, description="Percent to a fallback (budget shift or kill switch).")
    fallback_name: str | None = Field(default=None, description="The fallback receiving that share.")


class ObjectiveResult(StatusModel):
    """One objective's measurement in one check."""

    name: str = Field(description="Objective name.")
    verdict: Verdict = Field(description="Passed, Failed, Inconclusive or Error.")
    value: float | None = Field(default=None, description="The canary's measured value.")
    stable_value: float | None = Field(default=None, description="The stable revision's value, same window.")
    bound: str = Field(default="", description="The bound applied, for example `<= 1.2` or `<= 1.5 x stable`.")
    samples: float | None = Field(default=None, description="Requests in the window.")
    reason: str = Field(default="", description="Why the verdict is not Passed.")


class Analysis(StatusModel):
    """The last contract check."""

    at: str = Field(description="When the check ran (RFC 3339).")
    revision: str = Field(default="", description="The revision judged.")
    window: str = Field(default="", description="The window measured.")
    verdict: Verdict = Field(description="Overall verdict.")
    objectives: list[ObjectiveResult] = Field(default_factory=list, description="Every objective's result.")
    step: int | None = Field(
        default=None, description="The step the check began in (-1: the shadow phase); its verdict counts only there."
    )
    canary_weight: int | None = Field(default=None, description="The canary's percent of traffic when it began.")
    step_started_at: str | None = Field(default=None, description="When that step started (RFC 3339).")


class BudgetStatus(StatusModel):
    """Budget use over the budget window."""

    tokens_per_minute: float | None = Field(default=None, description="Measured tokens per minute.")
    cost_per_hour: str | None = Field(default=None, description="Measured spend per hour (decimal string).")
    exceeded: bool = Field(default=False, description="Whether a budget is exceeded now.")
    action: str | None = Field(default=None, description="The action in force because of the budget.")
    since: str | None = Field(default=None, description="When the action started (RFC 3339).")


class KillSwitchSource(StatusModel):
    """A KillSwitch or ClusterKillSwitch that selects this deployment."""

    kind: Literal["KillSwitch", "ClusterKillSwitch"] = Field(description="Kind of the switch.")
    name: str = Field(description="Name of the switch.")
    namespace: str | None = Field(default=None, description="Namespace of a KillSwitch.")
    reason: str = Field(default="", description="The reason the switch gives.")
    requested_by: str | None = Field(default=None, description="Who asked for it.")
    since: str | None = Field(
        default=None, description="When this switch began to hold this deployment's users (RFC 3339)."
    )


class ResumeState(StatusModel):
    """What to restore when the kill switch is released."""

    phase: Phase = Field(description="Phase before the switch.")
    step: int | None = Field(default=None, description="Step before the switch.")
    weights: Weights = Field(default_factory=Weights, description="Weights before the switch.")


class KillSwitchStatus(StatusModel):
    """Kill-switch state."""

    engaged: bool = Field(default=False, description="Whether users are routed to the fallback now.")
    episode: int = Field(default=0, description="How often switches have selected this deployment (numbers decisions).")
    captured: bool = Field(default=False, description="Whether the stable revision gets a mirror of the traffic.")
    fallback: str | None = Field(
        default=None, description="The fallback in use (none while holding with no fallback left to name)."
    )
    holding: bool = Field(
        default=False,
        description="No fallback is usable: users are held off the model anyway (on the last fallback, the reject "
        "responder, or no backend at all, which the Gateway answers with an error).",
    )
    stopped: bool = Field(default=False, description="Whether the model's pods are stopped (killSwitch.stopPods).")
    engaged_at: str | None = Field(default=None, description="When users were moved off the model (RFC 3339).")
    released_at: str | None = Field(
        default=None, description="When the last switch let go while the stopped pods start again (RFC 3339)."
    )
    sources: list[KillSwitchSource] = Field(default_factory=list, description="The switches selecting it.")
    resume: ResumeState | None = Field(default=None, description="The state restored on release.")


class HistoryEntry(StatusModel):
    """One automatic or manual decision, with the numbers behind it."""

    id: str = Field(
        description="Decision id, unique for the deployment's life: its number (status.decisions), then generation, "
        "revision, step and action."
    )
    at: str = Field(description="When it was decided (RFC 3339).")
    action: str = Field(description="What was done: deploy, step, pause, promote, rollback, kill, shift ...")
    phase: Phase = Field(description="The phase after the decision.")
    revision: str | None = Field(default=None, description="The revision it concerns.")
    step: int | None = Field(default=None, description="The step it concerns.")
    reason: str = Field(default="", description="A CamelCase reason.")
    message: str = Field(default="", description="A sentence a person can read.")
    values: dict[str, float] = Field(default_factory=dict, description="The numbers behind the decision.")


class PendingDecision(StatusModel):
    """A decision written before it is acted on, so a crash neither repeats nor loses it."""

    id: str = Field(description="The decision id.")
    action: str = Field(description="The action to carry out.")
    at: str = Field(description="When it was decided (RFC 3339).")


class ModelDeploymentStatus(StatusModel):
    """The observed state of a model deployment."""

    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    phase: Phase = Field(default="Pending", description="Where the rollout stands.")
    message: str = Field(default="", description="What is happening, in a sentence.")
    stable_revision: str | None = Field(default=None, description="The revision serving by default.")
    canary_revision: str | None = Field(default=None, description="The revision being rolled out.")
    previous_revision: str | None = Field(default=None, description="The revision before the stable one.")
    revisions: list[RevisionStatus] = Field(default_factory=list, description="Every revision with a workload.")
    weights: Weights = Field(default_factory=Weights, description="The traffic split in force.")
    current_step: int | None = Field(default=None, description="Index of the canary step in force.")
    mirror_revision: str | None = Field(
        default=None, description="The revision receiving a mirror of every request (shadow phase), serving none."
    )
    step_started_at: str | None = Field(default=None, description="When the current step started (RFC 3339).")
    next_check_at: str | None = Field(default=None, description="When the next check is due (RFC 3339).")
    failed_checks: int = Field(default=0, description="Failed checks at the current revision.")
    passed_step: int | None = Field(
        default=None, description="The step (-1: shadow) that has had a passing check since it started."
    )
    inconclusive_checks: int = Field(default=0, description="Consecutive inconclusive or error checks.")
    inconclusive_since: str | None = Field(
        default=None, description="Since when checks have been inconclusive (RFC 3339)."
    )
    last_analysis: Analysis | None = Field(default=None, description="The last contract check.")
    scaling: ScalingStatus | None = Field(
        default=None, description="A canary scale-up the next step waits for (its weight moves once it is ready)."
    )
    capacity: CapacityStatus = Field(default_factory=CapacityStatus, description="Replicas, GPUs and their cost.")
    budget: BudgetStatus | None = Field(default=None, description="Budget use.")
    kill_switch: KillSwitchStatus = Field(default_factory=KillSwitchStatus, description="Kill-switch state.")
    pending_decision: PendingDecision | None = Field(default=None, description="A decision not yet acted on.")
    handled_commands: dict[str, str] = Field(
        default_factory=dict,
        description="The last promote/abort annotation value acted on, per command, so each acts once.",
    )
    conditions: list[Condition] = keyed_list(
        description="Ready, Progressing, Degraded and the reasons behind them.", key="type"
    )
    decisions: int = Field(
        default=0,
        description="Decisions recorded so far: each one's number. History keeps the last 50; the operator's "
        "decision log keeps every one.",
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="The last decisions, newest last."
    )
