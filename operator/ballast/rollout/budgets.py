"""Budget use in status: per revision, against the budget, projected for the current split. Pure.

Use comes from the last measurement the shell made (`Observations.usage`). A revision that answers
only mirrored requests (the shadow phase, a kill switch with captureTraffic) is captured use:
reported apart, and counted against the budget only with `budgets.countCaptured`. Exceeding is
level-triggered with hysteresis (it clears once use falls `hysteresis` percent below every
budget); its start is a decision with an Event and a history entry, at most once per `cooldown`.
The actions that move traffic (`shift`, `killSwitch`) are not built yet: a condition says so.
"""

from __future__ import annotations

from decimal import Decimal

from ballast.api.modeldeployment import BudgetsSpec
from ballast.api.status import BudgetStatus, ModelDeploymentStatus, RevisionStatus, RevisionUsage
from ballast.api.timestamps import parse_time
from ballast.api.types import Condition, parse_duration
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context
from ballast.rollout.cost import (
    PER_REQUEST_EXTRA_DIGITS,
    Counts,
    Prices,
    Usage,
    cost_per_hour,
    cost_per_request,
    money,
    per_hour,
    tokens_per_minute,
)

INERT_ACTIONS = ("shift", "killSwitch")


def captured(status: ModelDeploymentStatus, revision: str) -> bool:
    """Whether `revision` answers only mirrored requests: the shadow canary, or the stable one under a capturing
    kill switch."""
    switch = status.kill_switch
    return revision == status.mirror_revision or (
        switch.engaged and switch.captured and revision == status.stable_revision
    )


def _share(status: ModelDeploymentStatus, revision: str) -> int:
    if revision == status.canary_revision:
        return status.weights.canary
    return status.weights.stable if revision == status.stable_revision else 0


def account(ctx: Context) -> None:
    """Write the last measurement into status; record the start and end of an excess."""
    spec, s, usage = ctx.spec.budgets, ctx.status, ctx.observations.usage
    if spec is None:
        s.budget = None
        return
    before = s.budget or BudgetStatus()
    if usage is None:
        s.budget = before
        return
    if usage.error is not None:
        s.budget = before.model_copy(update={"message": usage.error})
        return
    s.budget = _measured(spec, s, usage)
    _judge_excess(ctx, spec, before, s.budget)


def _measured(spec: BudgetsSpec, s: ModelDeploymentStatus, usage: Usage) -> BudgetStatus:
    window = parse_duration(usage.window)
    prices = Prices.of(spec.cost) if spec.cost is not None else None
    rows: list[RevisionUsage] = []
    counted_tokens = captured_tokens = Decimal(0)
    counted_cost = captured_cost = Decimal(0)
    successes_per_hour = Decimal(0)
    projected: Decimal | None = Decimal(0)
    for revision in _measured_revisions(s, usage):
        counts = usage.revisions.get(revision.name, Counts())
        mirrored = captured(s, revision.name)
        tokens = tokens_per_minute(counts, window)
        hourly = cost_per_hour(counts, prices, window, revision.ready_replicas) if prices else None
        each = cost_per_request(counts, prices, window, revision.ready_replicas) if prices else None
        each_text = money(each, prices.currency, PER_REQUEST_EXTRA_DIGITS) if prices and each is not None else None
        rows.append(
            RevisionUsage(
                revision=revision.name,
                role=revision.role,
                captured=mirrored,
                prompt_tokens=counts.prompt_tokens,
                completion_tokens=counts.completion_tokens,
                successful_requests=counts.successful_requests,
                tokens_per_minute=round(float(tokens), 3),
                cost_per_hour=money(hourly, prices.currency) if prices and hourly is not None else None,
                cost_per_request=each_text,
            )
        )
        if mirrored:
            captured_tokens += tokens
            captured_cost += hourly or 0
        if not mirrored or spec.count_captured:
            counted_tokens += tokens
            counted_cost += hourly or 0
        if not mirrored:
            successes_per_hour += per_hour(Decimal(repr(max(counts.successful_requests, 0.0))), window)
            share = _share(s, revision.name)
            if share and projected is not None:
                projected = None if each is None else projected + each * share / 100
    used = []
    if spec.tokens_per_minute is not None:
        used.append(counted_tokens / spec.tokens_per_minute)
    if spec.cost is not None:
        limit = Decimal(spec.cost.per_hour)
        used.append(counted_cost / limit if limit else Decimal("Infinity") if counted_cost else Decimal(0))
    currency = prices.currency if prices else None
    return BudgetStatus(
        measured_at=usage.at,
        window=usage.window,
        currency=currency,
        pricing=prices.pricing if prices else None,
        tokens_per_minute=round(float(counted_tokens), 3),
        tokens_per_minute_budget=spec.tokens_per_minute,
        cost_per_hour=money(counted_cost, currency) if currency else None,
        cost_per_hour_budget=spec.cost.per_hour if spec.cost else None,
        counts_captured=spec.count_captured,
        captured_tokens_per_minute=round(float(captured_tokens), 3),
        captured_cost_per_hour=money(captured_cost, currency) if currency else None,
        projected_cost_per_hour=(
            money(projected * successes_per_hour, currency) if currency and projected is not None else None
        ),
        used_percent=round(float(max(used) * 100), 2) if used else None,
        revisions=rows,
    )


def _measured_revisions(s: ModelDeploymentStatus, usage: Usage) -> list[RevisionStatus]:
    """Revisions that run or ran in the window: any with replicas, or with counts in the measurement."""

    def used(name: str) -> bool:
        counts = usage.revisions.get(name, Counts())
        return counts.tokens > 0 or counts.successful_requests > 0

    return [r for r in s.revisions if r.replicas or r.ready_replicas or used(r.name)]


def _judge_excess(ctx: Context, spec: BudgetsSpec, before: BudgetStatus, after: BudgetStatus) -> None:
    used = after.used_percent
    if used is None:
        return
    # Hysteresis: an excess ends only once use is this far below every budget.
    exceeded = used > (100 - spec.when_exceeded.hysteresis if before.exceeded else 100)
    after.exceeded, after.since, after.action = exceeded, before.since, before.action if exceeded else None
    values = _values(after)
    revision = ctx.status.stable_revision
    if exceeded and not before.exceeded:
        after.action = "alert"
        cooled = before.since is None or ctx.now - parse_time(before.since) >= parse_duration(
            spec.when_exceeded.cooldown
        )
        if cooled:
            after.since = ctx.now_text
            ctx.record("budget-exceeded", "BudgetExceeded", f"Budget exceeded: {_use_text(after)}",
                       revision=revision, warning=True, values=values)  # fmt: skip
    elif before.exceeded and not exceeded:
        ctx.record("budget-recovered", "BudgetRecovered",
                   f"Budget use is back below {100 - spec.when_exceeded.hysteresis}%: {_use_text(after)}",
                   revision=revision, values=values)  # fmt: skip


def _use_text(b: BudgetStatus) -> str:
    parts = []
    if b.tokens_per_minute_budget is not None:
        parts.append(f"{b.tokens_per_minute:g} tokens per minute of {b.tokens_per_minute_budget}")
    if b.cost_per_hour_budget is not None:
        parts.append(f"{b.cost_per_hour} {b.currency} per hour of {b.cost_per_hour_budget}")
    return f"{', '.join(parts)} ({b.used_percent:g}% used, over {b.window})"


def _values(b: BudgetStatus) -> dict[str, float]:
    values = {"usedPercent": b.used_percent or 0.0, "tokensPerMinute": b.tokens_per_minute or 0.0}
    if b.tokens_per_minute_budget is not None:
        values["tokensPerMinuteBudget"] = float(b.tokens_per_minute_budget)
    if b.cost_per_hour is not None and b.cost_per_hour_budget is not None:
        values["costPerHour"] = float(b.cost_per_hour)
        values["costPerHourBudget"] = float(b.cost_per_hour_budget)
    return values


def conditions(spec: BudgetsSpec | None, status: ModelDeploymentStatus) -> list[Condition]:
    """UsageMeasured, and BudgetActionActive: False while the declared action is one not built yet."""
    if spec is None:
        return []
    b = status.budget or BudgetStatus()
    if b.message:
        measured = condition("UsageMeasured", False, "QueryFailed", b.message[:1000])
    elif b.measured_at is None:
        measured = condition("UsageMeasured", False, "NotYetMeasured", "budget use has not been measured yet")
    else:
        measured = condition("UsageMeasured", True, "Measured", f"use measured over {b.window} from the runtime's "
                             "token counters")  # fmt: skip
    action = spec.when_exceeded.action
    if action in INERT_ACTIONS:
        acting = condition(
            "BudgetActionActive", False, "NotImplemented",
            f"spec.budgets.whenExceeded.action {action} is not acted on yet: use is measured, and an excess raises "
            "only a Warning Event, a history entry and the ballast_budget_exceeded metric (as action alert does)",
        )  # fmt: skip
    else:
        acting = condition(
            "BudgetActionActive", True, "AlertOnly",
            "an excess raises a Warning Event, a history entry and the ballast_budget_exceeded metric",
        )  # fmt: skip
    return [measured, acting]
