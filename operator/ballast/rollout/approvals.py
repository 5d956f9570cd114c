"""Steps that wait for a person: what status shows while they wait, and what their deadline does.

Derived from the state a decision leaves, so a wait shows exactly while the canary stands at a step with
`approval: true`, whatever path got it there or took it away (a promote, a rollback, a supersede).
"""

from __future__ import annotations

from datetime import datetime

from ballast.api.modeldeployment import Step
from ballast.api.status import PendingApproval
from ballast.api.timestamps import format_time, parse_time
from ballast.api.types import parse_duration
from ballast.rollout.context import Context


def waiting_step(ctx: Context) -> Step | None:
    """The step the canary stands at, when it waits for a person."""
    s = ctx.status
    if s.canary_revision is None or s.current_step is None or s.phase not in ("Progressing", "Paused"):
        return None
    steps = ctx.spec.rollout.effective_steps()
    step = steps[s.current_step] if s.current_step < len(steps) else None
    return step if step is not None and step.approval else None


def deadline(ctx: Context, step: Step) -> datetime | None:
    if step.approval_timeout is None or ctx.status.step_started_at is None:
        return None
    return parse_time(ctx.status.step_started_at) + parse_duration(step.approval_timeout.after)


def timed_out(ctx: Context, step: Step) -> bool:
    """Whether a step waiting for a person has passed its approvalTimeout."""
    due = deadline(ctx, step)
    return due is not None and ctx.now >= due


def update(ctx: Context) -> None:
    """status.pendingApproval from where the canary stands; a hold past the deadline is a decision, once."""
    s, previous = ctx.status, ctx.status.pending_approval
    step = waiting_step(ctx)
    if step is None or s.canary_revision is None or s.current_step is None or s.step_started_at is None:
        s.pending_approval = None
        return
    due = deadline(ctx, step)
    overdue = due is not None and ctx.now >= due
    pending = PendingApproval(
        step=s.current_step + 1,
        revision=s.canary_revision,
        since=s.step_started_at,
        deadline=format_time(due) if due else None,
        on_timeout=step.approval_timeout.action if step.approval_timeout else None,
        overdue=overdue,
    )
    same_wait = previous is not None and (previous.revision, previous.since) == (pending.revision, pending.since)
    if overdue and not (same_wait and previous is not None and previous.overdue):
        assert step.approval_timeout is not None
        ctx.record(
            "approval-overdue", "ApprovalOverdue",
            f"Step {pending.step} of canary {s.canary_revision} has waited {step.approval_timeout.after} for an "
            "approval; it keeps holding (approvalTimeout.action hold)",
            revision=s.canary_revision, step=s.current_step, warning=True,
            values={"waitedSeconds": (ctx.now - parse_time(pending.since)).total_seconds()},
        )  # fmt: skip
    s.pending_approval = pending


def next_due(ctx: Context) -> datetime | None:
    """The deadline of a wait not yet overdue: the operator must look at that moment, with no event to wake it."""
    pending = ctx.status.pending_approval
    if pending is None or pending.deadline is None or pending.overdue:
        return None
    return parse_time(pending.deadline)
