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
    workload: str = Field(
        default="", max_length=253, description="Name of its Deployment and Service; empty while it has none."
    )
    replicas: int = Field(default=0, description="Desired replicas.")
    ready_replicas: int = Field(default=0, description="Ready replicas, as its Deployment reports them.")
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


GateOutcome = Literal["Pending", "Passed", "Refused", "Error"]


class GateStatus(StatusModel):
    """A webhook's last call: for a gate, at the point of the rollout it guards; for a notification, its last one."""

    name: str = Field(description="The webhook's name.")
    type: str = Field(description="The webhook's type.")
    revision: str | None = Field(default=None, description="The canary revision the call is about.")
    step: int | None = Field(
        default=None, description="The step the gate guards (rollout: the step it leaves; none before the first)."
    )
    outcome: GateOutcome = Field(
        description="Pending (not answered yet), Passed, Refused (a 4xx or 3xx answer, or a verdict of fail) or "
        "Error (unreachable, timed out, a 5xx, an oversized answer, an address refused)."
    )
    attempts: int = Field(default=0, description="Calls made at this point.")
    code: int | None = Field(default=None, description="The HTTP status of the last answer.")
    latency_seconds: float | None = Field(default=None, description="How long the last call took.")
    scores: dict[str, float] = Field(default_factory=dict, description="Scores the last answer reported.")
    message: str = Field(default="", max_length=1024, description="The answer's message, or why the call failed.")
    at: str | None = Field(default=None, description="When the last call finished (RFC 3339).")
    since: str | None = Field(default=None, description="When this point was reached (RFC 3339).")
    error_since: str | None = Field(
        default=None, description="Since when the gate has failed to answer (RFC 3339); its deadline counts from it."
    )
    retry_at: str | None = Field(default=None, description="When the gate is called next (RFC 3339).")


WatchVerdict = Literal["Healthy", "Breached", "NoData", "Error"]
RulesSource = Literal["recorded", "raw"]


class BurnWindowReading(StatusModel):
    """One burn-rate window pair as measured: both windows' bad-event ratios and burn rates."""

    long: str = Field(description="The long window.")
    short: str = Field(description="The short window.")
    burn_rate: float = Field(description="The burn rate both windows must exceed for the pair to breach.")
    long_ratio: float | None = Field(default=None, description="Bad-event ratio over the long window.")
    short_ratio: float | None = Field(default=None, description="Bad-event ratio over the short window.")
    long_burn: float | None = Field(default=None, description="Burn rate over the long window.")
    short_burn: float | None = Field(default=None, description="Burn rate over the short window.")
    breached: bool = Field(default=False, description="Whether both windows burn faster than burnRate.")


class BurnReading(StatusModel):
    """One burn-rate check of the stable revision (contract.afterPromotion)."""

    at: str = Field(description="When the check ran (RFC 3339).")
    revision: str = Field(default="", description="The revision measured.")
    objective: str = Field(default="", description="The ratio objective measured.")
    target: float = Field(default=0.0, description="The SLO target (fraction of good events).")
    verdict: WatchVerdict = Field(description="Healthy, Breached (a pair breaches), NoData or Error.")
    source: RulesSource = Field(
        default="raw", description="recorded: Ballast's recording rules; raw: raw counters over each window."
    )
    windows: list[BurnWindowReading] = Field(default_factory=list, description="Every window pair.")
    reason: str = Field(default="", description="Why the verdict is NoData or Error.")


class ContractRollback(StatusModel):
    """A rollback after promotion in progress: users move to `to` as its pods become ready."""

    revision: str = Field(description="The revision rolled back for a breach.")
    to: str = Field(description="The revision users return to.")
    since: str = Field(description="When the rollback was decided (RFC 3339).")
    overdue: bool = Field(
        default=False,
        description="The revision has not served everyone within rollout.progressDeadline: the kill-switch policy "
        "engaged, or an alert went out.",
    )


class OperatorSwitch(StatusModel):
    """A KillSwitch the operator creates for a breach; a person releases it by deleting it."""

    name: str = Field(description="Name of the KillSwitch object.")
    reason: str = Field(description="Its reason, with the numbers.")
    engaged: bool = Field(default=False, description="Whether it has been seen engaged (then deleting it releases).")


class WatchStatus(StatusModel):
    """The burn-rate watch over the stable revision once it is promoted (contract.afterPromotion)."""

    revision: str | None = Field(default=None, description="The revision watched.")
    since: str | None = Field(
        default=None,
        description="Since when it serves users as watched (promotion, a rollback, a kill-switch release); a pair "
        "acts only once its short window lies after this time.",
    )
    last: BurnReading | None = Field(default=None, description="The last burn-rate check.")
    breached: bool = Field(default=False, description="Whether a breach stands and has been acted on.")
    rolled_back: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Revisions rolled back for a breach: never promoted again automatically, never a fallback.",
    )
    rollback: ContractRollback | None = Field(default=None, description="A rollback in progress.")
    switch: OperatorSwitch | None = Field(default=None, description="The KillSwitch the watch engaged, if any.")


class RevisionUsage(StatusModel):
    """One revision's use over the budget window, as its runtime counted it."""

    revision: str = Field(max_length=63, description="The revision.")
    role: RevisionRole = Field(description="Its role when measured.")
    captured: bool = Field(
        default=False, description="It answered only mirrored requests (shadow phase, kill switch with capture)."
    )
    prompt_tokens: float = Field(default=0, description="Prompt tokens in the window.")
    completion_tokens: float = Field(default=0, description="Completion tokens in the window.")
    successful_requests: float = Field(default=0, description="Successful requests in the window.")
    tokens_per_minute: float = Field(default=0, description="Prompt plus completion tokens per minute.")
    cost_per_hour: str | None = Field(default=None, description="Spend per hour (decimal string, budget currency).")
    cost_per_request: str | None = Field(
        default=None, description="Spend per successful request (none without a success in the window)."
    )


class BudgetStatus(StatusModel):
    """Budget use over the budget window, measured from the serving runtime's own counters."""

    measured_at: str | None = Field(default=None, description="When use was last measured (RFC 3339).")
    window: str = Field(default="", description="The window measured.")
    message: str = Field(default="", description="Why use could not be measured, if it could not.")
    currency: str | None = Field(default=None, description="The currency of every cost figure.")
    pricing: str | None = Field(
        default=None, description="Which prices apply: per-token, per-replica-hour, or per-token+per-replica-hour."
    )
    tokens_per_minute: float | None = Field(
        default=None, description="Measured tokens per minute counted against the budget."
    )
    tokens_per_minute_budget: int | None = Field(default=None, description="The budget's tokens per minute.")
    cost_per_hour: str | None = Field(
        default=None, description="Measured spend per hour counted against the budget (decimal string)."
    )
    cost_per_hour_budget: str | None = Field(default=None, description="The budget's spend per hour.")
    counts_captured: bool = Field(default=False, description="Whether captured (mirrored) use counts.")
    captured_tokens_per_minute: float = Field(default=0, description="Tokens per minute of mirrored requests.")
    captured_cost_per_hour: str | None = Field(default=None, description="Spend per hour of mirrored requests.")
    projected_cost_per_hour: str | None = Field(
        default=None,
        description="Spend per hour if the current split served the current request rate: each revision's cost "
        "per request times its share (a fallback's share is not priced).",
    )
    used_percent: float | None = Field(default=None, description="Use as a percent of the tightest budget.")
    exceeded: bool = Field(default=False, description="Whether a budget is exceeded now (with hysteresis).")
    action: str | None = Field(default=None, description="The action in force because of the budget.")
    since: str | None = Field(default=None, description="When the budget was last found exceeded (RFC 3339).")
    revisions: list[RevisionUsage] = Field(default_factory=list, description="Use per revision.")


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


class PendingApproval(StatusModel):
    """A step waiting for a person."""

    step: int = Field(description="The step waiting (1-based, as `kubectl ballast` and Events count).")
    revision: str = Field(description="The canary revision to approve.")
    since: str = Field(description="When the step started waiting (RFC 3339).")
    deadline: str | None = Field(default=None, description="When approvalTimeout acts (RFC 3339).")
    on_timeout: str | None = Field(default=None, description="What it does then: rollback or hold.")
    overdue: bool = Field(default=False, description="The deadline has passed and the step holds (action hold).")


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
    gates: list[GateStatus] = keyed_list(
        description="Each webhook's last call: outcome, HTTP status, latency, scores.", max_length=16
    )
    scaling: ScalingStatus | None = Field(
        default=None, description="A canary scale-up the next step waits for (its weight moves once it is ready)."
    )
    capacity: CapacityStatus = Field(default_factory=CapacityStatus, description="Replicas, GPUs and their cost.")
    budget: BudgetStatus | None = Field(default=None, description="Budget use.")
    after_promotion: WatchStatus = Field(
        default_factory=WatchStatus, description="The burn-rate watch over the stable revision."
    )
    kill_switch: KillSwitchStatus = Field(default_factory=KillSwitchStatus, description="Kill-switch state.")
    pending_approval: PendingApproval | None = Field(default=None, description="A step waiting for a person.")
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
