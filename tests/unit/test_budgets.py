"""Usage and cost: Decimal arithmetic, currencies, zero traffic, counter resets, and budget use in status."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus, RevisionStatus, Weights
from ballast.api.timestamps import format_time
from ballast.rollout import budgets
from ballast.rollout.context import Context
from ballast.rollout.core import decide
from ballast.rollout.cost import (
    Counts,
    Prices,
    Usage,
    amount,
    cost_per_hour,
    cost_per_request,
    money,
    tokens_per_minute,
)
from ballast.rollout.observations import Observations, RevisionObservation

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PRICES = Prices("USD", Decimal("0.0005"), Decimal("0.0015"))

# ---------------------------------------------------------------------------------- arithmetic


def test_cost_is_exact_decimal_arithmetic_from_the_price_strings() -> None:
    # 1000 prompt and 3000 completion tokens in a minute: 0.0005 + 0.0045 = 0.005 a minute, 0.3 an hour, exactly.
    counts = Counts(prompt_tokens=1000, completion_tokens=3000, successful_requests=10)
    assert cost_per_hour(counts, PRICES, MINUTE, replicas=0) == Decimal("0.3")
    assert cost_per_request(counts, PRICES, MINUTE, replicas=0) == Decimal("0.0005")
    assert tokens_per_minute(counts, MINUTE) == 4000
    # Prices a float cannot hold: ten times 0.1 of a token price is 1, not 0.9999999999999999.
    tenth = Prices("USD", Decimal("0.1"), Decimal("0.1"))
    assert cost_per_hour(Counts(prompt_tokens=10_000), tenth, timedelta(hours=1), 0) == Decimal(1)


@pytest.mark.parametrize(
    ("currency", "hourly", "per_request"),
    [
        ("USD", "1234.5678", "1234.56780000"),  # cents, shown to 1/100 of a cent; requests to 1/10^6
        ("JPY", "1234.57", "1234.567800"),  # no minor unit
        ("KWD", "1234.56780", "1234.567800000"),  # fils: three digits
        ("EUR", "1234.5678", "1234.56780000"),
    ],
)
def test_figures_are_rounded_below_the_currencys_minor_unit(currency: str, hourly: str, per_request: str) -> None:
    value = Decimal("1234.5678")
    assert money(value, currency) == hourly
    assert money(value, currency, extra=6) == per_request


def test_rounding_is_half_even_never_float_noise() -> None:
    assert money(Decimal("0.000050"), "USD") == "0.0000"  # half to even: down
    assert money(Decimal("0.000150"), "USD") == "0.0002"  # half to even: up
    assert money(Decimal("0.1") + Decimal("0.2"), "USD") == "0.3000"


def test_zero_traffic_costs_nothing_and_has_no_cost_per_request() -> None:
    nothing = Counts()
    assert cost_per_hour(nothing, PRICES, MINUTE, replicas=0) == 0
    assert tokens_per_minute(nothing, MINUTE) == 0
    assert cost_per_request(nothing, PRICES, MINUTE, replicas=0) is None  # nothing to divide by: no value, no pass


@pytest.mark.parametrize("value", [-120.0, math.nan, math.inf, -math.inf])
def test_a_counter_reset_or_a_broken_value_is_zero_use_never_negative_spend(value: float) -> None:
    # increase() handles resets itself; a custom query over a reset counter (delta, a subtraction) can go negative.
    assert amount(value) == 0
    assert amount(None) == 0  # no series yet
    # Only the 600 completion tokens a minute are priced: 0.0009 a minute, 0.054 an hour.
    assert cost_per_hour(Counts(prompt_tokens=value, completion_tokens=600), PRICES, MINUTE, 0) == Decimal("0.054")


def test_extrapolated_counts_keep_their_fraction() -> None:
    # Prometheus extrapolates increase() to the window's edges: 1016.95 tokens are priced as such.
    assert amount(1016.95) == Decimal("1016.95")


def test_replica_hours_price_self_hosted_serving() -> None:
    hosted = Prices("EUR", per_replica_hour=Decimal("2.40"))
    assert hosted.pricing == "per-replica-hour"
    assert Prices("EUR", Decimal(1), Decimal(1), Decimal(1)).pricing == "per-token+per-replica-hour"
    assert PRICES.pricing == "per-token"
    # Three ready replicas: 7.20 an hour whatever the tokens; 60 successes a minute share it.
    counts = Counts(prompt_tokens=5000, completion_tokens=5000, successful_requests=60)
    assert cost_per_hour(counts, hosted, MINUTE, replicas=3) == Decimal("7.20")
    assert cost_per_request(counts, hosted, MINUTE, replicas=3) == Decimal("0.002")


# ------------------------------------------------------------------------------- budget status


def spec(budget: dict[str, Any], **extra: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "m", "image": "i", "replicas": 2},
        "traffic": {"parentRefs": [{"name": "gw"}]},
        "fallbacks": [{"name": "sorry", "reject": {}}],
        "budgets": budget,
        **extra,
    })  # fmt: skip


BUDGET = {"tokensPerMinute": 10_000, "window": "1m",
          "cost": {"perHour": "1.00", "per1kPromptTokens": "0.0005", "per1kCompletionTokens": "0.0015"}}  # fmt: skip


def canary_status(canary_weight: int = 50) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Progressing", stable_revision="aaa", canary_revision="bbb", current_step=0,
        weights=Weights(stable=100 - canary_weight, canary=canary_weight),
        revisions=[RevisionStatus(name="aaa", role="stable", replicas=2, ready_replicas=2),
                   RevisionStatus(name="bbb", role="canary", replicas=2, ready_replicas=2)],
    )  # fmt: skip


def account(model_spec: ModelDeploymentSpec, status: ModelDeploymentStatus, usage: Usage, now: datetime) -> Context:
    ctx = Context(model_spec, 1, now, status.model_copy(deep=True), Observations(usage=usage))
    budgets.account(ctx)
    return ctx


def usage(now: datetime, **revisions: Counts) -> Usage:
    return Usage(format_time(now), "1m", revisions)


def test_use_per_revision_against_the_budget_and_the_projected_cost_of_the_split() -> None:
    # A minute of 40 successes each: the stable 0.002 (0.00005 a request); the canary, with answers twice as
    # long, 0.0035 (0.0000875 a request).
    measured = usage(T0, aaa=Counts(1000, 1000, 40), bbb=Counts(1000, 2000, 40), old=Counts())
    status = canary_status(50)
    status.revisions.append(RevisionStatus(name="old", role="retired"))  # scaled to zero, idle all window: no row
    b = account(spec(BUDGET), status, measured, T0).status.budget
    assert b is not None
    rows = {r.revision: r for r in b.revisions}
    assert set(rows) == {"aaa", "bbb"}
    assert (rows["aaa"].tokens_per_minute, rows["bbb"].tokens_per_minute) == (2000, 3000)
    assert (rows["aaa"].cost_per_hour, rows["bbb"].cost_per_hour) == ("0.1200", "0.2100")
    assert (rows["aaa"].cost_per_request, rows["bbb"].cost_per_request) == ("0.00005000", "0.00008750")
    assert (b.tokens_per_minute, b.cost_per_hour, b.currency, b.pricing) == (5000, "0.3300", "USD", "per-token")
    assert b.used_percent == 50  # 5000 of 10000 tokens a minute is the tightest (0.33 of 1.00 an hour)
    # 80 successes a minute (4800 an hour), half at each price: 4800 x 0.00006875 = 0.33.
    assert b.projected_cost_per_hour == "0.3300"
    # All users on the canary: the same request rate at its price.
    all_in = account(spec(BUDGET), canary_status(100), measured, T0).status.budget
    assert all_in is not None
    assert all_in.projected_cost_per_hour == "0.4200"
    assert not b.exceeded


def test_mirrored_use_is_captured_apart_and_counts_only_when_the_spec_says() -> None:
    shadow = canary_status(0).model_copy(update={"mirror_revision": "bbb", "current_step": None})
    measured = usage(T0, aaa=Counts(1000, 1000, 60), bbb=Counts(1000, 1000, 60))
    apart = account(spec(BUDGET), shadow, measured, T0).status.budget
    assert apart is not None
    assert [r.captured for r in apart.revisions] == [False, True]
    assert (apart.tokens_per_minute, apart.captured_tokens_per_minute) == (2000, 2000)
    assert (apart.cost_per_hour, apart.captured_cost_per_hour, apart.counts_captured) == ("0.1200", "0.1200", False)
    counted = account(spec({**BUDGET, "countCaptured": True}), shadow, measured, T0).status.budget
    assert counted is not None
    assert (counted.tokens_per_minute, counted.cost_per_hour, counted.counts_captured) == (4000, "0.2400", True)


def test_an_excess_is_one_event_with_its_numbers_then_held_by_hysteresis_until_use_falls_below_it() -> None:
    model_spec = spec({**BUDGET, "whenExceeded": {"hysteresis": 10, "cooldown": "5m"}})
    status = canary_status(0).model_copy(update={"canary_revision": None, "phase": "Stable"})

    def at(minutes: float, tokens: float) -> Context:
        nonlocal status
        now = T0 + timedelta(minutes=minutes)
        ctx = account(model_spec, status, usage(now, aaa=Counts(tokens / 2, tokens / 2, 10)), now)
        status = ctx.status
        return ctx

    assert at(0, 9_000).events == []
    over = at(1, 12_000)
    assert [e.reason for e in over.events] == ["BudgetExceeded"]
    assert over.events[0].type == "Warning"
    assert "12000 tokens per minute of 10000" in over.events[0].message
    entry = over.new_history[0]
    assert (entry.action, entry.values["tokensPerMinute"], entry.values["tokensPerMinuteBudget"]) == (
        "budget-exceeded", 12_000, 10_000)  # fmt: skip
    assert status.budget is not None
    assert (status.budget.exceeded, status.budget.action, status.budget.since) == (True, "alert", over.now_text)
    assert at(2, 9_500).events == []  # 95%: below the budget, not 10% below it
    assert status.budget.exceeded
    back = at(3, 8_500)
    assert [e.reason for e in back.events] == ["BudgetRecovered"]
    assert (status.budget.exceeded, status.budget.action) == (False, None)
    # Over again within the 5m cooldown: exceeded, but no second alert yet.
    again = at(4, 11_000)
    assert again.events == []
    assert status.budget.exceeded


def test_a_failed_measurement_keeps_the_last_figures_and_says_why() -> None:
    model_spec = spec(BUDGET)
    measured = account(model_spec, canary_status(), usage(T0, aaa=Counts(10, 10, 1)), T0).status
    failed = Usage(format_time(T0 + MINUTE), "1m", error="Prometheus at http://127.0.0.1:9 did not answer")
    after = account(model_spec, measured, failed, T0 + MINUTE).status
    assert after.budget is not None
    assert after.budget.message == failed.error
    assert after.budget.measured_at == format_time(T0)
    (condition,) = [c for c in budgets.conditions(model_spec.budgets, after) if c.type == "UsageMeasured"]
    assert (condition.status, condition.reason) == ("False", "QueryFailed")


@pytest.mark.parametrize(
    ("when", "status", "reason"),
    [
        ({"action": "shift", "share": 50, "to": "sorry"}, "False", "NotImplemented"),
        ({"action": "killSwitch"}, "False", "NotImplemented"),
        ({"action": "alert"}, "True", "AlertOnly"),
    ],
)
def test_budget_actions_not_built_yet_are_reported_as_not_acted_on(
    when: dict[str, Any], status: str, reason: str
) -> None:
    model_spec = spec({**BUDGET, "whenExceeded": when})
    decision = decide(model_spec, "aaa", 1, ModelDeploymentStatus(), Observations(
        revisions={"aaa": RevisionObservation(available=True, ready_replicas=2)},
        usage=usage(T0, aaa=Counts(100, 100, 5))), T0)  # fmt: skip
    conditions = {c.type: c for c in decision.status.conditions}
    acting = conditions["BudgetActionActive"]
    assert (acting.status, acting.reason) == (status, reason)
    if status == "False":
        assert f"action {when['action']} is not acted on yet" in acting.message
    assert conditions["UsageMeasured"].status == "True"
    assert decision.status.budget is not None
    assert decision.status.budget.tokens_per_minute == 200


def test_no_budgets_no_budget_status_and_no_budget_conditions() -> None:
    model_spec = ModelDeploymentSpec.model_validate({"model": {"name": "m", "image": "i"},
                                                     "traffic": {"parentRefs": [{"name": "gw"}]}})  # fmt: skip
    decision = decide(model_spec, "aaa", 1, ModelDeploymentStatus(), Observations(), T0)
    assert decision.status.budget is None
    assert not {"BudgetActionActive", "UsageMeasured"} & {c.type for c in decision.status.conditions}
