"""One contract check of a canary: every objective queried (batched by revision) and judged."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime

from ballast.analysis.judge import error_result, judge, overall
from ballast.analysis.providers.base import MetricsProvider, ProviderError, by_revision, first_value
from ballast.analysis.queries import Scope, TemplateError, preset_query, render_template, requests_query
from ballast.analysis.usage import count_usage
from ballast.api.modeldeployment import ModelDeploymentSpec, Objective
from ballast.api.status import Analysis, ObjectiveResult
from ballast.api.timestamps import format_time
from ballast.api.types import parse_duration
from ballast.rollout.cost import Prices, cost_per_request

log = logging.getLogger("ballast.checks")


TOKEN_PRICED = "cost-per-request"


async def _cost_per_request(
    provider: MetricsProvider, spec: ModelDeploymentSpec, scope: Scope, services: dict[str, str],
    replicas: dict[str, int],
) -> dict[str, float]:  # fmt: skip
    """Spend per successful request of each revision over the contract's window, priced by budgets.cost."""
    if spec.budgets is None or spec.budgets.cost is None:  # admission refuses this; an Error verdict if it slips by
        raise TemplateError("cost-per-request needs the prices of spec.budgets.cost")
    prices = Prices.of(spec.budgets.cost)
    window = parse_duration(scope.window)
    counts = await count_usage(provider, spec, scope, services)
    values = {r: cost_per_request(c, prices, window, replicas.get(r, 0)) for r, c in counts.items()}
    return {r: float(v) if v is not None else math.nan for r, v in values.items()}


async def _values(
    provider: MetricsProvider, spec: ModelDeploymentSpec, objective: Objective, scope: Scope, service_of: dict[str, str]
) -> dict[str, float]:
    if objective.preset is not None:
        return by_revision(await provider.query(preset_query(spec.model.runtime, objective.preset, scope)))
    assert objective.query is not None
    # A custom template names one revision: one query per revision (two at most: canary and stable).
    queries = {r: render_template(objective.query, scope, r, service_of[r]) for r in scope.revisions}
    answers = await asyncio.gather(*(provider.query(q) for q in queries.values()))
    return {r: first_value(a) for r, a in zip(queries, answers, strict=True)}


async def _nothing() -> dict[str, float]:
    return {}


async def run_check(
    provider: MetricsProvider,
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    canary: str,
    stable: str | None,
    services: dict[str, str],
    now: datetime,
    replicas: dict[str, int] | None = None,
) -> Analysis:
    """Judge `canary` (against `stable` for relative bounds) over the contract's window; `replicas` (ready, per
    revision) price a cost-per-request objective with a price per replica-hour."""
    objectives = spec.contract.objectives
    results: list[ObjectiveResult]
    try:
        scope = Scope(namespace, name, tuple(r for r in (canary, stable) if r), spec.contract.window)
        priced = any(o.preset == TOKEN_PRICED for o in objectives)
        samples, costs, values = await asyncio.gather(
            provider.query(requests_query(spec.model.runtime, scope)),
            _cost_per_request(provider, spec, scope, services, replicas or {}) if priced else _nothing(),
            asyncio.gather(
                *(_values(provider, spec, o, scope, services) for o in objectives if o.preset != TOKEN_PRICED)
            ),
        )
        measured = iter(values)
        values = [costs if o.preset == TOKEN_PRICED else next(measured) for o in objectives]
        counts = by_revision(samples)
        results = [
            judge(o, v.get(canary), v.get(stable) if stable else None, counts.get(canary), spec.contract.min_requests)
            for o, v in zip(objectives, values, strict=True)
        ]
    except ProviderError as error:
        results = [error_result(o, str(error)) for o in objectives]
    except TemplateError as error:
        results = [error_result(o, f"query template: {error}") for o in objectives]
    except Exception as error:  # a check never raises: whatever stops it is an Error verdict, counted and shown
        log.exception("contract check of %s/%s could not run", namespace, name)
        results = [error_result(o, f"the check could not run: {type(error).__name__}: {error}") for o in objectives]
    return Analysis(
        at=format_time(now), revision=canary, window=spec.contract.window, verdict=overall(results), objectives=results
    )
