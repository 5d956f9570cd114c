"""Webhook gates in the decision core: a revision earns its traffic. Pure: results come in as observations.

A gate guards a point of the rollout: `pre-rollout` before the canary takes any traffic or mirror,
`rollout` before each step advances (promotion included), `confirm-promotion` before the last step.
Reaching a point writes a Pending entry per gate in `status.gates`; the shell calls the gates whose
entry is due (`due_calls`) and hands back what they answered. A pass lets the point go; a refusal
rolls back or holds, as the webhook declares; a gate that cannot answer holds, is asked again with
backoff, and rolls the canary back once it has failed to answer for its deadline. Notifications
never hold anything: their last call is kept in status, and a failed one is a Warning Event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ballast.api.modeldeployment import GATE_TYPES, Webhook
from ballast.api.status import GateStatus, ModelDeploymentStatus
from ballast.api.timestamps import format_time, parse_time
from ballast.api.types import parse_duration
from ballast.rollout.context import Context, Event
from ballast.rollout.observations import GateResult

FIRST_RETRY = timedelta(seconds=1)
LONGEST_RETRY = timedelta(seconds=60)


@dataclass(frozen=True)
class Rollback:
    reason: str
    message: str


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure to answer: 1 s, doubling, at most a minute."""
    return min(FIRST_RETRY * (1 << min(max(attempts - 1, 0), 6)), LONGEST_RETRY)


def hold_at(ctx: Context, kind: str, step: int | None) -> str | Rollback | None:
    """Whether the gates of `kind` let the canary past this point: None when they do (or there are none), a
    sentence saying what it waits for while they hold, or a Rollback."""
    hooks = [w for w in ctx.spec.rollout.webhooks if w.type == kind]
    waiting: list[str] = []
    for hook in hooks:
        entry = _entry_at(ctx, hook, step)
        result = ctx.observations.gate_results.get(hook.name)
        if result is not None and _answers(result, entry):
            rollback = _apply(ctx, hook, entry, result)
            if rollback is not None:
                return rollback
        if entry.outcome == "Error" and entry.error_since is not None:
            deadline = hook.error_deadline()
            if ctx.now - parse_time(entry.error_since) >= parse_duration(deadline):
                return Rollback(
                    "GateDeadlineExceeded",
                    f"gate {hook.name} ({kind}) did not answer within {deadline}: {entry.message}",
                )
        if entry.outcome != "Passed":
            waiting.append(f"gate {hook.name} ({kind}: {_describe(entry)})")
    return f"waiting for {', '.join(waiting)}" if waiting else None


def _describe(entry: GateStatus) -> str:
    if entry.outcome == "Pending":
        return "called, no answer yet"
    if entry.outcome == "Refused":
        return f"refused, asked again: {entry.message}" if entry.message else "refused, asked again"
    return f"no answer after {entry.attempts} calls: {entry.message}"


def _answers(result: GateResult, entry: GateStatus) -> bool:
    """A result counts once, for the point it was called at, while the gate has not passed there."""
    same_point = (result.type, result.revision, result.step) == (entry.type, entry.revision, entry.step)
    return same_point and entry.outcome != "Passed" and result.at != entry.at


def _entry_at(ctx: Context, hook: Webhook, step: int | None) -> GateStatus:
    """The gate's entry at this point; reaching a new point starts a fresh one, due at once."""
    s = ctx.status
    point = (hook.type, s.canary_revision, step)
    for entry in s.gates:
        if entry.name == hook.name and (entry.type, entry.revision, entry.step) == point:
            return entry
    fresh = GateStatus(
        name=hook.name, type=hook.type, revision=s.canary_revision, step=step, outcome="Pending",
        since=ctx.now_text, retry_at=ctx.now_text,
    )  # fmt: skip
    s.gates = [*(e for e in s.gates if e.name != hook.name), fresh]
    return fresh


def _said(code: int | None, message: str) -> str:
    """What the gate answered: its HTTP status and message, or why there was no answer."""
    if code is None:
        return message or "no answer"
    return f"HTTP {code}: {message}" if message else f"HTTP {code}"


def _take(entry: GateStatus, result: GateResult) -> None:
    entry.attempts += 1
    entry.code = result.code
    entry.latency_seconds = result.latency_seconds
    entry.scores = dict(result.scores)
    entry.message = result.message[:1024]
    entry.at = result.at


def _numbers(entry: GateStatus) -> dict[str, float]:
    values = {f"score:{k}": v for k, v in entry.scores.items()}
    if entry.code is not None:
        values["httpStatus"] = float(entry.code)
    if entry.latency_seconds is not None:
        values["latencySeconds"] = round(entry.latency_seconds, 3)
    values["attempts"] = float(entry.attempts)
    return values


def _apply(ctx: Context, hook: Webhook, entry: GateStatus, result: GateResult) -> Rollback | None:
    s = ctx.status
    before = entry.outcome
    _take(entry, result)
    said = _said(result.code, entry.message)
    subject = f"Gate {hook.name} ({hook.type}) of canary {s.canary_revision}"
    if result.outcome == "Passed":
        entry.outcome, entry.error_since, entry.retry_at = "Passed", None, None
        ctx.record("gate-passed", "GatePassed", f"{subject} passed: {said}", revision=s.canary_revision,
                   step=entry.step, values=_numbers(entry), attempt=f"{hook.name}-{entry.attempts}")  # fmt: skip
        return None
    if result.outcome == "Refused":
        entry.error_since = None
        if hook.refusal_action() == "rollback":
            entry.outcome, entry.retry_at = "Refused", None
            return Rollback("GateRefused", f"gate {hook.name} ({hook.type}) refused: {said}")
        entry.outcome = "Refused"
        entry.retry_at = format_time(ctx.now + parse_duration(ctx.spec.rollout.interval))
        if before != "Refused":
            ctx.record("gate-refused", "GateRefused", f"{subject} refused, holding and asking again every "
                       f"{ctx.spec.rollout.interval}: {said}", revision=s.canary_revision, step=entry.step,
                       warning=True, values=_numbers(entry), attempt=f"{hook.name}-{entry.attempts}")  # fmt: skip
        return None
    entry.outcome = "Error"
    entry.error_since = entry.error_since or ctx.now_text
    entry.retry_at = format_time(ctx.now + backoff(entry.attempts))
    if before != "Error":
        ctx.record("gate-error", "GateUnavailable", f"{subject} could not answer; it holds the canary "
                   f"for at most {hook.error_deadline()}: {said}", revision=s.canary_revision, step=entry.step,
                   warning=True, values=_numbers(entry), attempt=f"{hook.name}-{entry.attempts}")  # fmt: skip
    return None


def record_notifications(ctx: Context) -> None:
    """Notifications' last calls into status; a failed one is a Warning Event (no decision, so no history)."""
    for hook in ctx.spec.rollout.webhooks:
        result = ctx.observations.gate_results.get(hook.name)
        if hook.type in GATE_TYPES or result is None or result.type != hook.type:
            continue
        entry = next((e for e in ctx.status.gates if e.name == hook.name and e.type == hook.type), None)
        if entry is not None and entry.at == result.at:
            continue
        entry = GateStatus(name=hook.name, type=hook.type, revision=result.revision, step=result.step,
                           outcome=result.outcome, since=result.at)  # fmt: skip
        _take(entry, result)
        entry.attempts = 1
        ctx.status.gates = [*(e for e in ctx.status.gates if e.name != hook.name), entry]
        if result.outcome != "Passed":
            said = _said(result.code, result.message)
            ctx.events.append(
                Event("Warning", "NotificationFailed", f"Notification {hook.name} ({hook.type}) failed: {said}")
            )


def forget_removed(ctx: Context) -> None:
    """Entries of webhooks no longer in the spec go."""
    names = {(w.name, w.type) for w in ctx.spec.rollout.webhooks}
    if any((e.name, e.type) not in names for e in ctx.status.gates):
        ctx.status.gates = [e for e in ctx.status.gates if (e.name, e.type) in names]


def holding(status: ModelDeploymentStatus) -> bool:
    """Whether a canary stands where gates may be called (not frozen by a switch, not finished)."""
    return (
        status.canary_revision is not None
        and status.phase in ("Progressing", "Promoting")
        and not (status.kill_switch.sources or status.kill_switch.engaged)
    )


def due_calls(status: ModelDeploymentStatus, now: datetime) -> list[GateStatus]:
    """The gate entries to call now: at the canary as it stands, not passed, and due."""
    if not holding(status):
        return []
    return [
        e for e in status.gates
        if e.type in GATE_TYPES and e.revision == status.canary_revision and e.outcome != "Passed"
        and e.retry_at is not None and parse_time(e.retry_at) <= now
    ]  # fmt: skip


def next_due(ctx: Context) -> list[datetime]:
    """When a gate is called again, and when one that cannot answer meets its deadline."""
    if not holding(ctx.status):
        return []
    hooks = {w.name: w for w in ctx.spec.rollout.webhooks}
    due: list[datetime] = []
    for entry in ctx.status.gates:
        hook = hooks.get(entry.name)
        if hook is None or entry.revision != ctx.status.canary_revision or entry.outcome == "Passed":
            continue
        if entry.retry_at is not None:
            due.append(parse_time(entry.retry_at))
        if entry.error_since is not None:
            due.append(parse_time(entry.error_since) + parse_duration(hook.error_deadline()))
    return [moment for moment in due if moment > ctx.now]  # a call due now starts after this write
