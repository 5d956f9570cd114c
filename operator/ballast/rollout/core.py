"""The decision core: (spec, status, observations, now) -> (new status, events). Pure: no I/O, no clock.

The new status is also the desired state of the children: which revisions run with how many
replicas, and the traffic weights. The shell makes the world match it, so every decision is
written down before anything acts on it, and acting twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Analysis, ModelDeploymentStatus, Phase, RevisionStatus, ScalingStatus, Weights
from ballast.api.timestamps import format_due, format_time, parse_time
from ballast.api.types import parse_duration
from ballast.rollout import approvals, budgets, capacity, contract_watch, gates, killswitch, refusals
from ballast.rollout.check_scope import SHADOW_STEP, judged_step, measured_now
from ballast.rollout.conditions import not_acted_on, set_conditions
from ballast.rollout.context import Context, Decision, Event, set_phase, significant, split_values
from ballast.rollout.observations import Observations

__all__ = ["Decision", "Event", "decide", "replicas_for_share"]


def decide(
    spec: ModelDeploymentSpec,
    desired_revision: str,
    generation: int,
    status: ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    """The next status of one ModelDeployment, and the Events and history entries that explain it."""
    ctx = Context(spec, generation, now, status.model_copy(deep=True), observations)
    s = ctx.status
    refusals.record_new(ctx, status.conditions)
    if observations.route_refused is not None:
        # Ballast cannot move traffic: nothing moves, not a step, not a kill switch; the conditions say why.
        s.message = f"traffic unchanged: {observations.route_refused.message}"
        s.next_check_at = None  # nothing falls due while held; the shell looks again at the refusal
        return _conclude(ctx)
    killswitch.begin(ctx)
    contract_watch.begin(ctx)
    gates.forget_removed(ctx)
    gates.record_notifications(ctx)
    if s.phase == "Failed":
        # Failed means the last spec could not be acted on; this one can: resume where status stands.
        s.phase = "Progressing" if s.canary_revision else "Stable"
    if s.stable_revision is None:
        _first_deploy(ctx, desired_revision)
    elif desired_revision == s.stable_revision:
        _settle_on_stable(ctx)
    elif desired_revision != s.canary_revision and contract_watch.refuses(ctx, desired_revision):
        pass  # a revision rolled back for a breach is never deployed again automatically
    elif desired_revision != s.canary_revision:
        _start_canary(ctx, desired_revision)
    else:
        _progress_canary(ctx)
    contract_watch.settle(ctx)
    _retire_previous(ctx)
    _collect_garbage(ctx)
    _size_revisions(ctx)
    killswitch.settle(ctx)  # after sizing: a stopped model stays stopped whatever its sizes
    capacity.report(ctx, status)
    capacity.account(ctx, status)
    budgets.account(ctx)
    approvals.update(ctx)
    s.next_check_at = _next_due(ctx)
    return _conclude(ctx)


def _conclude(ctx: Context) -> Decision:
    s, spec, observations = ctx.status, ctx.spec, ctx.observations
    s.observed_generation = ctx.generation
    _report_workloads(ctx)
    extra = (
        killswitch.conditions(spec, s, observations)
        + refusals.conditions(observations)
        + budgets.conditions(spec.budgets, s)
        + contract_watch.conditions(ctx)
        + not_acted_on(spec)
    )
    if s.revisions:
        extra.append(capacity.capacity_condition(s, observations))
    set_conditions(s, observations, ctx.now_text, extra)
    return Decision(s, tuple(ctx.events), tuple(ctx.new_history))


# ------------------------------------------------------------------------------------ transitions


def _revision(ctx: Context, name: str) -> RevisionStatus | None:
    return next((r for r in ctx.status.revisions if r.name == name), None)


def _ensure_revision(ctx: Context, name: str, role: str) -> RevisionStatus:
    found = _revision(ctx, name)
    if found is None:
        found = RevisionStatus(name=name, role="canary", created_at=ctx.now_text)
        ctx.status.revisions = [*ctx.status.revisions, found]
    found.role = role  # type: ignore[assignment]
    found.retire_at = None
    return found


def _first_deploy(ctx: Context, revision: str) -> None:
    s = ctx.status
    _ensure_revision(ctx, revision, "stable")
    s.stable_revision = revision
    s.weights = Weights(stable=100, canary=0)
    set_phase(ctx, "Stable", f"revision {revision} serves 100%")
    ctx.record("deploy", "Deployed", f"First revision {revision} serves all traffic", revision=revision)


def _retire(ctx: Context, name: str | None) -> None:
    revision = _revision(ctx, name) if name else None
    if revision is not None and revision.role != "stable":
        revision.role = "retired"
        revision.retire_at = None


def _settle_on_stable(ctx: Context) -> None:
    s = ctx.status
    if s.canary_revision is not None and s.phase not in ("RolledBack", "Failed"):
        superseded = s.canary_revision
        _retire(ctx, superseded)
        ctx.record(
            "supersede", "CanarySuperseded",
            f"The template is back to stable {s.stable_revision}; canary {superseded} is withdrawn",
            revision=superseded, step=s.current_step,
        )  # fmt: skip
    if s.canary_revision is not None:
        _retire(ctx, s.canary_revision)
    s.canary_revision = None
    s.current_step = None
    s.step_started_at = None
    s.mirror_revision = None
    s.scaling = None
    s.weights = Weights(stable=100, canary=0)
    set_phase(ctx, "Stable", f"revision {s.stable_revision} serves 100%")


def _start_canary(ctx: Context, revision: str) -> None:
    s = ctx.status
    if s.canary_revision is not None:
        superseded = s.canary_revision
        _retire(ctx, superseded)
        ctx.record(
            "supersede", "CanarySuperseded", f"Canary {superseded} is superseded by {revision}",
            revision=superseded, step=s.current_step,
        )  # fmt: skip
    _ensure_revision(ctx, revision, "canary")
    s.canary_revision = revision
    s.current_step = None
    s.step_started_at = ctx.now_text
    s.mirror_revision = None
    s.failed_checks = 0
    s.passed_step = None
    s.inconclusive_since = None
    s.inconclusive_checks = 0
    s.scaling = None
    s.weights = Weights(stable=100, canary=0)
    set_phase(ctx, "Progressing", f"waiting for canary {revision} to become Available")
    ctx.record("canary", "CanaryStarted", f"New revision {revision} starts as a canary", revision=revision)


def _rollback(ctx: Context, reason: str, message: str) -> None:
    s = ctx.status
    canary = s.canary_revision
    step = s.current_step
    s.current_step = None
    s.mirror_revision = None
    s.scaling = None
    drained = _return_to_stable(ctx)
    where = f"stable {s.stable_revision} serves 100%" if drained else _split_text(ctx)
    set_phase(ctx, "RolledBack", f"{message}; {where}")
    ctx.record(
        "rollback", reason, f"Rolled back canary {canary}: {message}; {where}",
        revision=canary, step=step, warning=True,
        values={**split_values(s.weights),
                "stableReadyReplicas": float(ctx.observations.of(s.stable_revision).ready_replicas)},
    )  # fmt: skip


def _split_text(ctx: Context) -> str:
    s = ctx.status
    ready = ctx.observations.of(s.stable_revision).ready_replicas
    return (
        f"stable {s.stable_revision} serves {s.weights.stable}% as its {ready}/{ctx.spec.model.replicas} ready "
        f"replicas allow, canary {s.canary_revision} the other {s.weights.canary}% until the stable scales back up"
    )


def _return_to_stable(ctx: Context) -> bool:
    """After a rollback, the stable takes back what its ready replicas can carry (all of it when they are all
    ready, or when the canary has none to serve with); the canary keeps the rest, never more than it had.
    True once the stable serves 100% and the canary is retired."""
    s, total = ctx.status, ctx.spec.model.replicas
    ready = ctx.observations.of(s.stable_revision).ready_replicas
    canary_ready = ctx.observations.of(s.canary_revision).ready_replicas
    if ready >= total or canary_ready == 0 or ctx.spec.traffic.router == "service":
        s.weights = Weights(stable=100, canary=0)
        _retire(ctx, s.canary_revision)
        return True
    stable = max(100 - s.weights.canary, min(99, 100 * ready // max(total, 1)))
    s.weights = Weights(stable=stable, canary=100 - stable)
    return False


def _drain_rolled_back(ctx: Context) -> None:
    """A rolled-back canary still serving while the stable scales back up: move its share as the stable's
    replicas become ready."""
    s = ctx.status
    canary = _revision(ctx, s.canary_revision) if s.canary_revision else None
    if canary is None or canary.role != "canary":
        return
    before = s.weights.canary
    if _return_to_stable(ctx):
        set_phase(ctx, "RolledBack", f"{s.message.split(';')[0]}; stable {s.stable_revision} serves 100%")
        ctx.record(
            "rollback-drained", "RollbackCompleted",
            f"Stable {s.stable_revision} has its replicas ready and serves 100%; canary {canary.name} retired",
            revision=canary.name, values={**split_values(s.weights), "canaryWeightBefore": float(before)},
        )  # fmt: skip
    elif s.weights.canary != before:
        s.message = f"{s.message.split(';')[0]}; {_split_text(ctx)}"


def _is_new(ctx: Context, name: str, token: str | None) -> bool:
    """Whether an annotation value has not been acted on yet."""
    return token is not None and ctx.status.handled_commands.get(name) != token


def _command(ctx: Context, name: str, token: str | None) -> bool:
    """True once per new annotation value."""
    if token is None or not _is_new(ctx, name, token):
        return False
    ctx.status.handled_commands = {**ctx.status.handled_commands, name: token}
    return True


def _progress_canary(ctx: Context) -> None:
    s, spec, obs = ctx.status, ctx.spec, ctx.observations
    canary = s.canary_revision
    if s.phase == "RolledBack":
        if s.after_promotion.rollback is None:  # a burn-rate rollback moves its users itself (contract_watch)
            _drain_rolled_back(ctx)
        return  # a rolled-back revision is not retried until the template changes
    if _command(ctx, "abort", obs.commands.abort):
        _rollback(ctx, "Aborted", "aborted by annotation")
        return
    if killswitch.frozen(ctx):
        return  # frozen where it stands while users get a fallback; released, it resumes at the same step
    if s.current_step is not None and contract_watch.holds_canary(ctx):
        return  # the stable breaches its burn-rate windows: an incident, not a reason to promote
    seen = obs.of(canary)
    if seen.crash_looping:
        _rollback(ctx, "CrashLoop", f"canary pods restarted {seen.restarts} times")
        return
    if seen.refused:
        _rollback(ctx, "PodsRefused", f"the API server refuses the canary's pods: {seen.refused}")
        return
    deadline = parse_duration(spec.rollout.progress_deadline)
    since = parse_time(s.step_started_at) if s.step_started_at else ctx.now
    if not _carries_its_weight(ctx):
        if ctx.now - since >= deadline:
            _rollback(
                ctx, "ProgressDeadlineExceeded",
                f"canary not Available within {spec.rollout.progress_deadline}{_capacity_note(ctx)}",
            )  # fmt: skip
        else:
            if s.current_step is None:
                set_phase(ctx, "Progressing", f"waiting for canary {canary} to become Available{_capacity_note(ctx)}")
            _held_past_deadline(ctx)  # a canary held on its checks that then stops being Available: still bounded
        return
    steps = spec.rollout.effective_steps()
    judged = s.mirror_revision is not None or s.current_step is not None
    if judged and _judge(ctx):
        return  # rolled back on the contract
    if s.current_step is None:
        if _gated(ctx, "pre-rollout", None) or _shadowing(ctx, since):
            return
        if len(steps) == 1 and _gated(ctx, "confirm-promotion", None):
            return
        _enter_step(ctx, 0)
        return
    if obs.commands.paused:
        if s.phase != "Paused":
            set_phase(ctx, "Paused", f"paused by annotation at step {s.current_step + 1}/{len(steps)}")
            ctx.record("pause", "Paused", "Rollout paused by annotation", revision=canary, step=s.current_step)
        return
    if s.phase == "Paused":
        ctx.record("resume", "Resumed", "Rollout resumed", revision=canary, step=s.current_step)
        s.phase = _step_phase(ctx, s.current_step)
    step = steps[s.current_step]
    promoted = _is_new(ctx, "promote", obs.commands.promote)
    hold = parse_duration(step.pause or spec.rollout.interval)
    checked = not (step.analysis and spec.contract.objectives) or s.passed_step == s.current_step
    # A scale-up in progress has passed this step's gates already: only the canary's replicas hold it.
    gates_passed = promoted or s.scaling is not None
    timeout = step.approval_timeout
    if not gates_passed and timeout is not None and timeout.action == "rollback" and approvals.timed_out(ctx, step):
        _rollback(ctx, "ApprovalTimedOut", f"step {s.current_step + 1} was not approved within {timeout.after}")
        return
    if not gates_passed and (step.approval or ctx.now - since < hold or not checked):
        if step.approval:
            waiting = "a manual promote"
        elif ctx.now - since < hold:
            waiting = f"{step.pause or spec.rollout.interval} to pass"
        else:
            waiting = "a passing contract check"
        set_phase(
            ctx,
            _step_phase(ctx, s.current_step),
            f"step {s.current_step + 1}/{len(steps)} at {step.weight}%: waiting for {waiting}",
        )
        return
    if _gated(ctx, "rollout", s.current_step):
        return  # a promote waits with the gate: its token is taken only when the step is left
    if s.current_step + 2 == len(steps) and _gated(ctx, "confirm-promotion", s.current_step):
        return
    if promoted:
        _command(ctx, "promote", obs.commands.promote)
        _record_manual_promote(ctx, approval=step.approval)
    if s.current_step + 1 < len(steps):
        if _scaled_for(ctx, s.current_step + 1):
            _enter_step(ctx, s.current_step + 1)
    else:
        _promote(ctx)


def _gated(ctx: Context, kind: str, step: int | None) -> bool:
    """True while the gates of `kind` hold the canary at this point (or once one has rolled it back)."""
    held = gates.hold_at(ctx, kind, step)
    if isinstance(held, gates.Rollback):
        _rollback(ctx, held.reason, held.message)
        return True
    if held is not None:
        steps = ctx.spec.rollout.effective_steps()
        where = "before its first step" if step is None else f"at step {step + 1}/{len(steps)}"
        set_phase(ctx, "Progressing" if step is None else _step_phase(ctx, step),
                  f"canary {ctx.status.canary_revision} {where}: {held}")  # fmt: skip
        return True
    return False


def _digest(analysis: Analysis | None) -> object:
    """What a person reads of a check: what it measured, verdicts and values to two significant digits."""
    if analysis is None:
        return None

    return (
        analysis.revision,
        analysis.step,
        analysis.canary_weight,
        analysis.verdict,
        tuple(
            (o.name, o.verdict, significant(o.value), significant(o.stable_value), o.reason)
            for o in analysis.objectives
        ),
    )


def _judge(ctx: Context) -> bool:
    """Apply a fresh contract check to the canary; True when it rolled the canary back.

    Only a verdict that measured the canary as it stands counts (`check_scope.py`); without one, a hold that
    has lasted `inconclusiveDeadline` still rolls back, on time, not at the next verdict.
    """
    s, spec = ctx.status, ctx.spec
    analysis = ctx.observations.analysis
    if analysis is None or not measured_now(analysis, s):
        return _held_past_deadline(ctx)
    if _digest(analysis) != _digest(s.last_analysis):
        s.last_analysis = analysis
    step = judged_step(s)
    values = {o.name: o.value for o in analysis.objectives if o.value is not None}
    if analysis.verdict == "Passed":
        s.inconclusive_since = None
        s.inconclusive_checks = 0
        s.passed_step = step
        return False
    if analysis.verdict == "Failed":
        s.inconclusive_since = None
        s.inconclusive_checks = 0
        s.failed_checks += 1
        failed = "; ".join(f"{o.name} {o.reason}" for o in analysis.objectives if o.verdict == "Failed")
        ctx.record(
            "check-failed", "CheckFailed",
            f"Check {s.failed_checks} of canary {s.canary_revision} failed: {failed}",
            revision=s.canary_revision, step=step, warning=True, values=values, attempt=s.failed_checks,
        )  # fmt: skip
        if s.failed_checks > spec.rollout.failure_limit:
            _rollback(ctx, "AnalysisFailed", f"{failed} (failed checks {s.failed_checks} > failureLimit "
                      f"{spec.rollout.failure_limit})")  # fmt: skip
            return True
        return False
    # Inconclusive or Error: hold the weights; roll back once it has lasted inconclusiveDeadline.
    if s.inconclusive_since is None:
        s.inconclusive_since = ctx.now_text
        reasons = "; ".join(f"{o.name}: {o.reason}" for o in analysis.objectives if o.verdict != "Passed")
        ctx.record(
            "check-held", "CheckInconclusive" if analysis.verdict == "Inconclusive" else "MetricsUnavailable",
            f"Canary {s.canary_revision} holds at its weight: {reasons}",
            revision=s.canary_revision, step=step, warning=True, values=values,
        )  # fmt: skip
    s.inconclusive_checks += 1
    limit = spec.rollout.inconclusive_limit
    if limit is not None and s.inconclusive_checks > limit:
        reason = "AnalysisInconclusive" if analysis.verdict == "Inconclusive" else "MetricsUnavailable"
        _rollback(ctx, reason, f"{s.inconclusive_checks} inconclusive checks in a row > inconclusiveLimit {limit}")
        return True
    return _held_past_deadline(ctx)


def _held_past_deadline(ctx: Context) -> bool:
    """Roll back a canary whose checks have been inconclusive (or failing to run) for `inconclusiveDeadline`."""
    s, spec = ctx.status, ctx.spec
    if s.inconclusive_since is None:
        return False
    if ctx.now - parse_time(s.inconclusive_since) < parse_duration(spec.rollout.inconclusive_deadline):
        return False
    unavailable = s.last_analysis is not None and s.last_analysis.verdict == "Error"
    reason = "MetricsUnavailable" if unavailable else "AnalysisInconclusive"
    _rollback(ctx, reason, f"no conclusive check for {spec.rollout.inconclusive_deadline}")
    return True


def _shadowing(ctx: Context, since: datetime) -> bool:
    """The optional shadow phase: the canary gets a mirror of every request and serves none.

    Returns True while the shadow phase holds the rollout.
    """
    s, shadow = ctx.status, ctx.spec.rollout.shadow
    if shadow is None:
        return False
    if not ctx.observations.mirror_supported:
        # A mirror the Gateway cannot carry would fail every request on the rule: skip, and say so.
        s.mirror_revision = None
        ctx.record(
            "shadow-skipped", "ShadowUnsupported",
            f"Shadow phase of canary {s.canary_revision} skipped: {killswitch.MIRROR_UNSUPPORTED}",
            revision=s.canary_revision, warning=True,
        )  # fmt: skip
        return False
    if s.mirror_revision is None:
        s.mirror_revision = s.canary_revision
        s.step_started_at = ctx.now_text
        set_phase(
            ctx, "Progressing", f"shadow: canary {s.canary_revision} receives mirrored traffic for {shadow.duration}"
        )
        ctx.record(
            "shadow", "ShadowStarted", f"Canary {s.canary_revision} receives a mirror of every request, serving none",
            revision=s.canary_revision,
        )  # fmt: skip
        return True
    if ctx.now - since < parse_duration(shadow.duration):
        return True
    # After its duration, the shadow phase still needs a passing check when it asks for one.
    return bool(shadow.analysis and ctx.spec.contract.objectives) and s.passed_step != SHADOW_STEP


def _step_phase(ctx: Context, index: int) -> Phase:
    """The last step hands the canary everything: the rollout is then promoting it."""
    return "Promoting" if index == len(ctx.spec.rollout.effective_steps()) - 1 else "Progressing"


def _record_manual_promote(ctx: Context, *, approval: bool) -> None:
    """Who let the canary leave its step by hand: the approver's name, which admission lets only that user write."""
    s, who = ctx.status, ctx.observations.commands.approved_by
    assert s.current_step is not None
    step = f"Step {s.current_step + 1}/{len(ctx.spec.rollout.effective_steps())}"
    if approval:
        message = f"{step} approved by {who or 'an unrecorded user (the promote carried no ballast.dev/approved-by)'}"
    else:
        message = f"{step} left early by {who or 'a promote annotation'}"
    ctx.record(
        "approve" if approval else "manual-promote", "Approved" if approval else "PromotedByHand", message,
        revision=s.canary_revision, step=s.current_step,
    )  # fmt: skip


def _enter_step(ctx: Context, index: int) -> None:
    s = ctx.status
    steps = ctx.spec.rollout.effective_steps()
    weight = steps[index].weight
    s.current_step = index
    s.step_started_at = ctx.now_text
    s.mirror_revision = None
    s.weights = Weights(stable=100 - weight, canary=weight)
    set_phase(ctx, _step_phase(ctx, index), f"step {index + 1}/{len(steps)}: canary {s.canary_revision} at {weight}%")
    ctx.record(
        "step", "StepStarted", f"Step {index + 1}/{len(steps)}: canary {s.canary_revision} serves {weight}%",
        revision=s.canary_revision, step=index, values={"weight": float(weight)},
    )  # fmt: skip


def _promote(ctx: Context) -> None:
    s = ctx.status
    old, new = s.stable_revision, s.canary_revision
    assert new is not None
    previous = _revision(ctx, old) if old else None
    if previous is not None:
        previous.role = "previous"
        previous.retire_at = format_time(ctx.now + parse_duration(ctx.spec.rollout.scale_down_delay))
    _ensure_revision(ctx, new, "stable")
    s.previous_revision, s.stable_revision, s.canary_revision = old, new, None
    s.current_step = None
    s.step_started_at = None
    s.scaling = None
    s.weights = Weights(stable=100, canary=0)
    set_phase(ctx, "Stable", f"revision {new} promoted and serves 100%")
    ctx.record("promote", "Promoted", f"Revision {new} promoted; {old} stays warm until scale-down", revision=new)


def _serving_as_fallback(ctx: Context, revision: str) -> bool:
    """The previous revision taking the users of an engaged kill switch stays warm until released."""
    state = ctx.status.kill_switch
    fallback = next((f for f in ctx.spec.fallbacks if f.name == state.fallback), None)
    return bool(state.engaged and fallback and fallback.previous_revision and revision == ctx.status.previous_revision)


def _retire_previous(ctx: Context) -> None:
    for revision in ctx.status.revisions:
        if _serving_as_fallback(ctx, revision.name):
            continue
        if revision.role == "previous" and revision.retire_at and parse_time(revision.retire_at) <= ctx.now:
            revision.role = "retired"
            revision.retire_at = None
            ctx.record(
                "scale-down", "ScaledDown", f"Previous revision {revision.name} scaled down", revision=revision.name
            )


def _collect_garbage(ctx: Context) -> None:
    """Keep only `revisionHistoryLimit` retired revisions; the shell deletes the workloads of the rest."""
    retired = [r for r in ctx.status.revisions if r.role == "retired" and r.name != ctx.status.canary_revision]
    excess = len(retired) - ctx.spec.rollout.revision_history_limit
    if excess > 0:
        dropped = {r.name for r in retired[:excess]}
        ctx.status.revisions = [r for r in ctx.status.revisions if r.name not in dropped]


def _size_revisions(ctx: Context) -> None:
    """Replicas per revision (`rollout/capacity.py`): a canary in proportion to the weight it serves or is
    scaled up for, the stable at full size (or what the canary leaves it), a warm previous revision at its
    declared size, zero for retired ones.

    The service router splits by replica ratio, and its one Service selects every revision's pods,
    so there a previous revision cannot stay warm without serving: it scales down at promotion.
    """
    s, spec = ctx.status, ctx.spec
    total = spec.model.replicas
    if spec.traffic.router == "service":
        _size_by_ratio(ctx)
        return
    plan = spec.rollout.capacity
    canary = _revision(ctx, s.canary_revision) if s.canary_revision else None
    rolling = canary is not None and canary.role == "canary" and s.phase != "RolledBack"
    canary_size = capacity.canary_replicas(total, _sized_weight(ctx), plan.canary) if rolling else 0
    for revision in s.revisions:
        if revision.role == "retired":
            revision.replicas = 0
        elif revision.role == "canary":
            # A rolled-back canary still serving keeps what it has until the stable takes its share back.
            revision.replicas = canary_size if rolling else revision.replicas
        elif revision.role == "stable":
            revision.replicas = (
                capacity.stable_replicas(total, s.weights.stable, canary_size, plan.stable) if rolling else total
            )
        else:
            current = revision.replicas if plan.stable == "shrink" else total
            revision.replicas = capacity.previous_replicas(plan.previous_replicas, total, current)


def _size_by_ratio(ctx: Context) -> None:
    replicas = ctx.spec.model.replicas
    weights = ctx.status.weights
    for revision in ctx.status.revisions:
        if revision.role in ("retired", "previous"):
            revision.replicas = 0
            continue
        share = weights.stable if revision.role == "stable" else weights.canary
        if revision.role == "canary" and ctx.status.current_step is None:
            # A canary must become Available before its first step: start it at that step's size.
            share = ctx.spec.rollout.effective_steps()[0].weight
        revision.replicas = replicas_for_share(replicas, share)


def _sized_weight(ctx: Context) -> int:
    """The canary weight its replicas are sized for: the scale-up in progress, the step in force, or the first
    step before it starts."""
    s = ctx.status
    if s.scaling is not None:
        return s.scaling.weight
    if s.current_step is not None:
        return s.weights.canary
    return ctx.spec.rollout.effective_steps()[0].weight


def _ready_needed(ctx: Context, weight: int) -> int:
    """Ready canary replicas before the canary may serve `weight` percent."""
    spec, s = ctx.spec, ctx.status
    if spec.model.autoscaling is not None:
        return 1  # the autoscaler owns the count: one ready pod proves the revision serves
    if spec.traffic.router == "service":
        return max(1, replicas_for_share(spec.model.replicas, weight))
    return capacity.ready_needed(spec.model.replicas, weight, spec.rollout.capacity, s.weights.stable)


def _carries_its_weight(ctx: Context) -> bool:
    """Whether the canary's ready replicas carry the weight in force (before the first step: that step's)."""
    s = ctx.status
    seen = ctx.observations.of(s.canary_revision)
    weight = s.weights.canary if s.current_step is not None else ctx.spec.rollout.effective_steps()[0].weight
    return seen.exists and seen.ready_replicas > 0 and seen.ready_replicas >= _ready_needed(ctx, weight)


def _capacity_note(ctx: Context) -> str:
    seen = ctx.observations.of(ctx.status.canary_revision)
    if not seen.unschedulable:
        return ""
    missing = ", ".join(capacity.missing_resources(seen.unschedulable_reason)) or "no node fits"
    return f"; {seen.unschedulable} of its pods cannot be scheduled (missing {missing})"


def _scaled_for(ctx: Context, index: int) -> bool:
    """Whether the canary has the ready replicas step `index` needs; if not, it is scaled up for it and the
    weight holds (an Event when the scale-up begins), bounded by `rollout.progressDeadline`."""
    s, spec = ctx.status, ctx.spec
    weight = spec.rollout.effective_steps()[index].weight
    need = _ready_needed(ctx, weight)
    ready = ctx.observations.of(s.canary_revision).ready_replicas
    if ready >= need:
        s.scaling = None
        return True
    values = {"weight": float(weight), "readyReplicas": float(ready), "neededReplicas": float(need)}
    if s.scaling is None or s.scaling.weight != weight:
        s.scaling = ScalingStatus(weight=weight, replicas=need, since=ctx.now_text)
        ctx.record(
            "scale-up", "ScalingUp",
            f"Canary {s.canary_revision} scales up before it serves {weight}%: {ready}/{need} replicas ready",
            revision=s.canary_revision, step=s.current_step, values=values,
        )  # fmt: skip
    elif ctx.now - parse_time(s.scaling.since) >= parse_duration(spec.rollout.progress_deadline):
        _rollback(
            ctx, "ProgressDeadlineExceeded",
            f"canary had {ready}/{need} ready replicas for {weight}% after {spec.rollout.progress_deadline}"
            f"{_capacity_note(ctx)}",
        )  # fmt: skip
        return False
    steps = spec.rollout.effective_steps()
    set_phase(
        ctx, _step_phase(ctx, s.current_step or 0),
        f"step {(s.current_step or 0) + 1}/{len(steps)} at {s.weights.canary}%: waiting for capacity: "
        f"{ready}/{need} canary replicas ready for {weight}%{_capacity_note(ctx)}",
    )  # fmt: skip
    return False


def _report_workloads(ctx: Context) -> None:
    """Each revision's Deployment and its ready replicas, as the API server reports them now."""
    for revision in ctx.status.revisions:
        seen = ctx.observations.of(revision.name)
        revision.workload = seen.workload
        revision.ready_replicas = seen.ready_replicas


def replicas_for_share(total: int, weight: int) -> int:
    """Replicas that carry `weight` percent of `total` (at least one while the share is not zero)."""
    if weight <= 0:
        return 0
    return max(1, round(total * weight / 100))


def _next_due(ctx: Context) -> str | None:
    """The earliest time something can change without an event: a step's end, a deadline, a scale-down."""
    s, spec = ctx.status, ctx.spec
    due: list[datetime] = []
    frozen = killswitch.frozen(ctx)
    due.extend(d for d in (killswitch.stop_due(ctx), killswitch.restart_due(ctx)) if d is not None)
    if s.canary_revision and s.phase in ("Progressing", "Promoting") and s.step_started_at and not frozen:
        started = parse_time(s.step_started_at)
        if s.current_step is None and s.mirror_revision is not None and spec.rollout.shadow is not None:
            waited = [started + parse_duration(spec.rollout.shadow.duration)]
        elif s.current_step is None:
            waited = [started + parse_duration(spec.rollout.progress_deadline)]
        else:
            step = spec.rollout.effective_steps()[s.current_step]
            passed = step.approval or s.scaling is not None  # a scale-up waits on replicas, not this clock
            waited = [] if passed else [started + parse_duration(step.pause or spec.rollout.interval)]
        # A wait that is over leaves the step waiting on a check or a person, whose answer wakes it: a time
        # already past would wake it every tick for nothing.
        due.extend(moment for moment in waited if moment >= ctx.now)
    if s.canary_revision and s.scaling is not None and not frozen:
        due.append(parse_time(s.scaling.since) + parse_duration(spec.rollout.progress_deadline))
    if s.canary_revision and s.inconclusive_since and s.phase in ("Progressing", "Promoting", "Paused") and not frozen:
        due.append(parse_time(s.inconclusive_since) + parse_duration(spec.rollout.inconclusive_deadline))
    due.extend(gates.next_due(ctx))
    due.extend(parse_time(r.retire_at) for r in s.revisions if r.retire_at and not _serving_as_fallback(ctx, r.name))
    approval_due = approvals.next_due(ctx)
    if approval_due is not None and not frozen and approval_due >= ctx.now:
        due.append(approval_due)
    return format_due(min(due)) if due else None
